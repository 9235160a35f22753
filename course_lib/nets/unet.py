"""A small UNet for EDM training (Chapter 5 and the reference networks): residual blocks at two or
more resolutions (three by default), optional self-attention at the lowest one, no normalization
layers (see layers.py).
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
    """Resolutions H, H/2, ..., H/2^(L-1) with widths ``channels`` (length L >= 2: the depth).

    One residual block per level on the way down, two at the bottom (optionally with self-attention
    between them) and one per level on the way up, with skip connections. H and W must be divisible
    by 2^(L-1). The default (32, 64, 64) is the course's reference UNet (data/checkpoints); modules are
    created in the same order for every depth, so a config and seed give the same initial weights.
    """

    def __init__(self, in_channels: int = 1, channels=(32, 64, 64), attention: bool = False,
                 n_classes: int = 0, emb_dim: int = 128):
        super().__init__()
        c = [int(v) for v in channels]
        if len(c) < 2 or min(c) < 1:
            raise ValueError(f"UNet needs at least two positive widths (one per resolution), got {channels}")
        self.levels = L = len(c)
        self.emb = NoiseEmbedding(emb_dim, n_classes)
        self.conv_in = conv3x3(in_channels, c[0])
        self.down1 = ResBlock(c[0], c[0], emb_dim)                                    # level 0
        for k in range(2, L):                                                         # level k-1
            setattr(self, f"down{k}", ResBlock(c[k - 2], c[k - 1], emb_dim))
        self.mid1, self.mid2 = ResBlock(c[L - 2], c[L - 1], emb_dim), ResBlock(c[L - 1], c[L - 1], emb_dim)
        self.attn = SelfAttention(c[L - 1]) if attention else None
        for k in range(L - 1, 0, -1):                                                 # level k-1
            setattr(self, f"up{k}", ResBlock(c[k] + c[k - 1], c[k - 1], emb_dim))
        self.conv_out = conv3x3(c[0], in_channels)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, class_labels=None) -> torch.Tensor:
        m = 2 ** (self.levels - 1)
        if x.shape[-1] % m or x.shape[-2] % m:
            raise ValueError(f"a UNet with {self.levels} resolutions needs H and W divisible by {m}, "
                             f"got {tuple(x.shape[-2:])}")
        e = F.silu(self.emb(c_noise, class_labels))
        skips = [self.down1(self.conv_in(x), e)]                                      # H
        for k in range(2, self.levels):
            skips.append(getattr(self, f"down{k}")(F.avg_pool2d(skips[-1], 2), e))    # H / 2^(k-1)
        h = self.mid1(F.avg_pool2d(skips[-1], 2), e)                                  # H / 2^(L-1)
        if self.attn is not None:
            h = self.attn(h)
        h = self.mid2(h, e)
        for k in range(self.levels - 1, 0, -1):
            h = getattr(self, f"up{k}")(torch.cat([F.interpolate(h, scale_factor=2.0), skips[k - 1]], 1), e)
        return self.conv_out(F.silu(h))
