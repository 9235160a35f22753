"""EDM preconditioning: a raw network F becomes a denoiser (Karras et al. 2022, Table 1; Chapter 0).

    D(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma)),
    c_skip = sigma_data^2 / (sigma^2 + sigma_data^2),   c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2),
    c_in = 1 / sqrt(sigma^2 + sigma_data^2),            c_noise = ln(sigma) / 4.

Training minimises lambda(sigma) |D(x0 + sigma n, sigma) - x0|^2 with lambda = 1 / c_out^2 and
ln(sigma) ~ N(P_mean, P_std^2), so every sigma contributes a unit-scale regression target for F.
"""
from __future__ import annotations

import hashlib

import torch
from torch import nn

from ..denoisers.base import Denoiser, check_images, sigma_batch, sigma_view

__all__ = ["edm_coefficients", "EDMPrecond", "NetworkDenoiser", "config_image_shape"]

_IMAGE_SIZE = {"mnist": 28, "fashion_mnist": 28, "cifar10": 32, "faces": 64}


def config_image_shape(config: dict | None):
    """(C, H, W) of the images a training config describes (dataset size plus ``options.pad``), or None."""
    config = config or {}
    if config.get("dataset") not in _IMAGE_SIZE or "channels" not in config:
        return None
    s = _IMAGE_SIZE[config["dataset"]] + 2 * int((config.get("options") or {}).get("pad", 0))
    return (int(config["channels"]), s, s)


def edm_coefficients(sigma: torch.Tensor, sigma_data: float = 0.5):
    """Return (c_skip, c_out, c_in, c_noise) for a tensor of sigmas."""
    s2 = sigma**2 + sigma_data**2
    return sigma_data**2 / s2, sigma * sigma_data / s2.sqrt(), 1 / s2.sqrt(), sigma.log() / 4


class EDMPrecond(nn.Module):
    """Wrap a raw network ``model(x_in, c_noise, class_labels)`` with EDM preconditioning.

    ``forward(x, sigma, class_labels=None)`` returns D(x, sigma) and is differentiable.
    """

    def __init__(self, model: nn.Module, sigma_data: float = 0.5):
        super().__init__()
        self.model = model
        self.sigma_data = float(sigma_data)

    def forward(self, x: torch.Tensor, sigma, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        x = check_images(x)
        s = sigma_view(sigma_batch(sigma, x), x)
        c_skip, c_out, c_in, c_noise = edm_coefficients(s, self.sigma_data)
        F = self.model(c_in * x, c_noise.flatten(), class_labels)
        return c_skip * x + c_out * F.to(x.dtype)


class NetworkDenoiser(Denoiser):
    """A trained :class:`EDMPrecond` network as a course denoiser ``D(x, sigma)`` (no autograd by default).

    Attributes ``name``, ``config`` and ``train_subset`` (dataset name, split and indices of the
    training images) record what it was trained on, so analytic machines can use the same images.
    ``shape`` (default: from the config, see :func:`config_image_shape`) is the (C, H, W) the network
    was trained on: other image sizes are rejected (a convolutional network would silently accept them,
    e.g. MNIST padded to 32 x 32 for a 28 x 28 network). ``class_labels`` are only accepted by a
    class-conditional network (``config["n_classes"] > 0``).
    """

    def __init__(self, net: EDMPrecond, name: str = "network", config: dict | None = None,
                 train_subset: dict | None = None, class_labels: torch.Tensor | None = None,
                 grad: bool = False, shape: tuple | None = None):
        self.net = net.eval()
        self.shape = tuple(shape) if shape is not None else config_image_shape(config)
        self.name = name
        self.config = config or {}
        self.train_subset = train_subset or {}
        self.class_labels = class_labels
        self.grad = grad

    @property
    def cache_key(self) -> str:
        """Identity for :mod:`course_lib.compare`'s cache: name, training-data hash and a hash of the
        current weights (as float32), so a retrained or fine-tuned network never reuses stale results."""
        h = hashlib.sha256()
        for k, v in self.net.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return f"net:{self.name}:{self.config.get('content_hash', '')}:{h.hexdigest()[:16]}"

    def to(self, device=None, dtype=None):
        self.net.to(device=device, dtype=dtype)
        return self

    def denoise(self, x, sigma):
        p = next(self.net.parameters())
        labels = self.class_labels
        if self.shape is not None and tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"x has image shape {tuple(x.shape[1:])} but network {self.name!r} was trained on "
                             f"{self.shape}: load the data as it was trained (e.g. without pad=2 for a 28 x 28 "
                             f"network, or with the config's options {self.config.get('options', {})})")
        if labels is not None:
            emb = getattr(getattr(self.net, "model", None), "emb", None)
            if emb is not None and getattr(emb, "label", "?") is None:
                raise ValueError(f"class_labels were given but network {self.name!r} is unconditional (trained "
                                 f"without labels; config n_classes = {self.config.get('n_classes', 0)}): they "
                                 f"would be ignored; set class_labels=None")
            if labels.shape[0] != x.shape[0]:
                raise ValueError(f"class_labels has {labels.shape[0]} entries for a batch of {x.shape[0]}")
        with torch.set_grad_enabled(self.grad and torch.is_grad_enabled()):
            out = self.net(x.to(p.device, p.dtype), sigma.to(p.device, p.dtype), labels)
        return out.to(x.device, x.dtype)

    def __repr__(self):
        return f"NetworkDenoiser({self.name})"
