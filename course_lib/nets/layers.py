"""Building blocks shared by the course's networks: noise embeddings and conv layers.

No normalization layers anywhere (Kamb & Ganguli 2025, App. C.1): a GroupNorm would exchange
information across the whole image and break the locality that Chapters 4-5 study.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class NoiseEmbedding(nn.Module):
    """c_noise (B,) -> (B, dim): sinusoidal features, optional class embedding, then a 2-layer MLP."""

    def __init__(self, dim: int, n_classes: int = 0, n_freq: int = 32):
        super().__init__()
        self.n_freq = n_freq
        self.mlp = nn.Sequential(nn.Linear(2 * n_freq, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.label = nn.Embedding(n_classes, 2 * n_freq) if n_classes else None

    def forward(self, c_noise: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        # geometric frequencies from 0.25 to 16 cycles per unit of c_noise = ln(sigma)/4
        freqs = torch.exp(torch.linspace(math.log(0.25), math.log(16.0), self.n_freq,
                                         device=c_noise.device, dtype=c_noise.dtype))
        arg = 2 * math.pi * c_noise[:, None] * freqs[None]
        e = torch.cat([arg.cos(), arg.sin()], dim=1)
        if self.label is not None:
            if class_labels is None:
                raise ValueError("this network is class-conditional: pass class_labels")
            e = e + self.label(class_labels)
        return self.mlp(e)


def conv3x3(c_in: int, c_out: int, padding_mode: str = "zeros") -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode=padding_mode)
