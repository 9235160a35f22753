"""A small UNet for EDM training (Chapter 5 and the reference networks): residual blocks at three
resolutions, optional self-attention at the lowest one, no normalization layers (see layers.py).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .layers import NoiseEmbedding, conv3x3


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.conv1, self.conv2 = conv3x3(c_in, c_out), conv3x3(c_out, c_out)
        self.emb = nn.Linear(emb_dim, c_out)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x, e):
        h = F.silu(self.conv1(F.silu(x)) + self.emb(e)[:, :, None, None])
        return self.skip(x) + self.conv2(h)


class SelfAttention(nn.Module):
    """Single-head self-attention over all pixels (non-local: it breaks the locality of Chapter 5)."""

    def __init__(self, c: int):
        super().__init__()
        self.qkv, self.proj = nn.Conv2d(c, 3 * c, 1), nn.Conv2d(c, c, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x, e=None):
        B, C, H, W = x.shape
        q, k, v = self.qkv(x).reshape(B, 3, C, H * W).unbind(1)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return x + self.proj(a.transpose(1, 2).reshape(B, C, H, W))


class UNet(nn.Module):
    """Resolutions H, H/2, H/4 with ``channels`` widths; H and W must be divisible by 4."""

    def __init__(self, in_channels: int = 1, channels=(32, 64, 64), attention: bool = False,
                 n_classes: int = 0, emb_dim: int = 128):
        super().__init__()
        c1, c2, c3 = channels
        self.emb = NoiseEmbedding(emb_dim, n_classes)
        self.conv_in = conv3x3(in_channels, c1)
        self.down1, self.down2 = ResBlock(c1, c1, emb_dim), ResBlock(c1, c2, emb_dim)
        self.mid1, self.mid2 = ResBlock(c2, c3, emb_dim), ResBlock(c3, c3, emb_dim)
        self.attn = SelfAttention(c3) if attention else None
        self.up2, self.up1 = ResBlock(c3 + c2, c2, emb_dim), ResBlock(c2 + c1, c1, emb_dim)
        self.conv_out = conv3x3(c1, in_channels)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, class_labels=None) -> torch.Tensor:
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"UNet needs H and W divisible by 4, got {tuple(x.shape[-2:])}")
        e = F.silu(self.emb(c_noise, class_labels))
        h1 = self.down1(self.conv_in(x), e)                       # H
        h2 = self.down2(F.avg_pool2d(h1, 2), e)                   # H/2
        h = self.mid1(F.avg_pool2d(h2, 2), e)                     # H/4
        if self.attn is not None:
            h = self.attn(h)
        h = self.mid2(h, e)
        h = self.up2(torch.cat([F.interpolate(h, scale_factor=2.0), h2], 1), e)
        h = self.up1(torch.cat([F.interpolate(h, scale_factor=2.0), h1], 1), e)
        return self.conv_out(F.silu(h))
