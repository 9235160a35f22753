"""Kamb & Ganguli's local ResNet (2025, App. C.1): a fixed, known receptive field (Chapter 5).

conv_in (3x3) -> ``depth - 2`` residual 3x3 conv layers -> conv_out (3x3), SiLU activations, no
normalization. With ``depth`` 3x3 layers the receptive field is (2 depth + 1)^2 pixels: 17 x 17 for
the paper's depth 8. The noise (and class) embedding enters each layer as a per-channel bias, which is
spatially uniform, so the network stays exactly local and translation-equivariant (up to padding).
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import NoiseEmbedding, conv3x3


class LocalResNet(nn.Module):
    def __init__(self, in_channels: int = 1, channels: int = 64, depth: int = 8, padding: str = "zeros",
                 n_classes: int = 0, emb_dim: int = 128):
        super().__init__()
        if depth < 3:
            raise ValueError(f"depth must be >= 3, got {depth}")
        if padding not in ("zeros", "circular"):
            raise ValueError(f"padding must be 'zeros' or 'circular', got {padding!r}")
        self.emb = NoiseEmbedding(emb_dim, n_classes)
        self.conv_in = conv3x3(in_channels, channels, padding)
        self.blocks = nn.ModuleList(conv3x3(channels, channels, padding) for _ in range(depth - 2))
        self.biases = nn.ModuleList(nn.Linear(emb_dim, channels) for _ in range(depth - 1))
        self.conv_out = conv3x3(channels, in_channels, padding)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        self.act = nn.SiLU()
        self.receptive_field = 2 * depth + 1

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, class_labels=None) -> torch.Tensor:
        e = self.act(self.emb(c_noise, class_labels))
        h = self.act(self.conv_in(x) + self.biases[0](e)[:, :, None, None])
        for conv, bias in zip(self.blocks, self.biases[1:]):
            h = h + self.act(conv(h) + bias(e)[:, :, None, None])
        return self.conv_out(h)
