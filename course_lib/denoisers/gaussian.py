"""Gaussian (Wiener) and Gaussian-mixture denoisers (Chapter 2, Sec. "The Wiener filter").

If the data were Gaussian, x0 ~ N(mu, Sigma) with Sigma = U diag(lam) U^T, the noised density is
N(mu, Sigma + sigma^2 I) and the posterior mean is the Wiener filter

    D(x, sigma) = mu + Sigma (Sigma + sigma^2 I)^-1 (x - mu)
                = mu + sum_k lam_k / (lam_k + sigma^2) u_k u_k^T (x - mu),

i.e. shrinkage of the coordinates of x - mu along each principal component by its signal-to-noise
ratio (Wang & Vastola 2024; Wang 2026 slides). It is also the best *affine* denoiser W x + b of ANY
data with mean mu and covariance Sigma. We apply it in the eigenbasis: two (B, d) x (d, r) matmuls,
never a d x d inverse.

Rank truncation (``rank=r``): only the top r eigenpairs are kept and the d - r discarded directions
are treated as having ZERO variance, so D projects them out (their shrinkage factor 0/(0+sigma^2) = 0).
This is the covariance U_r diag(lam_r) U_r^T, the closest rank-r PSD matrix to Sigma, and it is
also what the closed-form trajectory of :mod:`course_lib.linear` assumes for the "off-manifold" part.

VP / DDIM form (Chapter 0 conversions, alpha_bar = 1/(1 + sigma^2)): for x_t = sqrt(ab) x0 + sqrt(1-ab) eps,

    x0_hat(x_t) = mu + sum_k sqrt(ab) lam_k / (ab lam_k + 1 - ab) u_k u_k^T (x_t - sqrt(ab) mu).

The mixture version p = sum_j pi_j N(mu_j, Sigma_j) has D(x) = sum_j w_j(x) D_j(x) with posterior
responsibilities w_j(x) = softmax_j(log pi_j + log N(x; mu_j, Sigma_j + sigma^2 I)).
"""
from __future__ import annotations

import math

import torch

from ..validate import as_int, check_finite
from .base import Denoiser, check_images, check_query, sigma_batch, sigma_view

__all__ = ["GaussianDenoiser", "GaussianMixtureDenoiser", "kmeans"]


def _check_rank(rank, d):
    if rank is None:
        return d
    return as_int(rank, "rank (None keeps all)", 1, d)


def _check_layout(x: torch.Tensor, shape: tuple, machine: str) -> None:
    if tuple(x.shape[1:]) != shape:
        raise ValueError(f"x must have image shape {shape} (the {machine}'s model), got batch shape "
                         f"{tuple(x.shape)}: reshape it to (B, {', '.join(map(str, shape))}); a flat (B, d) "
                         f"or (B, d, 1, 1) layout would give a wrong answer")


def _flat(images: torch.Tensor, name="train_images") -> torch.Tensor:
    check_images(images, name)
    return images.reshape(images.shape[0], -1)


class GaussianDenoiser(Denoiser):
    """Wiener filter D = mu + U diag(lam/(lam + sigma^2)) U^T (x - mu) (Chapter 2).

    Parameters
    ----------
    mean : (d,) data mean mu.  lam : (r,) eigenvalues (descending, >= 0).  U : (d, r) orthonormal
    eigenvectors as columns.  shape : the image shape (C, H, W) with C*H*W = d.
    rank : keep only the top ``rank`` eigenpairs (the rest get zero variance, see module doc).
    """

    def __init__(self, mean, lam, U, shape, rank: int | None = None):
        mean, lam, U = torch.as_tensor(mean), torch.as_tensor(lam), torch.as_tensor(U)
        shape = tuple(int(s) for s in shape)
        d = math.prod(shape)
        if mean.shape != (d,):
            raise ValueError(f"mean must have shape ({d},) for image shape {shape}, got {tuple(mean.shape)}")
        if U.ndim != 2 or U.shape[0] != d:
            raise ValueError(f"U must have shape ({d}, r), got {tuple(U.shape)}")
        if lam.shape != (U.shape[1],):
            raise ValueError(f"lam must have shape ({U.shape[1]},) to match U, got {tuple(lam.shape)}")
        if not bool(torch.isfinite(lam).all()) or bool((lam < 0).any()):
            raise ValueError(f"lam must be finite and >= 0, got min {lam.min().item()!r}")
        r = _check_rank(rank, U.shape[1])
        self.mean, self.lam, self.U, self.shape, self.rank = mean, lam[:r], U[:, :r], shape, r

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_stats(cls, mean, lam, U, shape, rank: int | None = None) -> "GaussianDenoiser":
        """Build from a mean (d,), eigenvalues (r,), eigenvectors (d, r) and the image shape."""
        return cls(mean, lam, U, shape, rank)

    @classmethod
    def from_data(cls, train_images: torch.Tensor, rank: int | None = None, **stats_kwargs) -> "GaussianDenoiser":
        """Fit mu and Sigma to ``train_images`` (N, C, H, W) with :func:`course_lib.stats.dataset_stats`
        (chunked, float64, cached; ``stats_kwargs`` are passed on, e.g. ``correction=0``)."""
        from ..stats import dataset_stats

        check_finite(check_images(train_images, "train_images"), "train_images")
        st = dataset_stats(train_images, **stats_kwargs)
        return cls(st.mean, st.lam, st.U, st.shape, rank)

    @classmethod
    def from_covariance(cls, mean, Sigma, shape, rank: int | None = None) -> "GaussianDenoiser":
        """Build from a dense symmetric PSD covariance (d, d) (eigendecomposed here)."""
        Sigma = torch.as_tensor(Sigma)
        lam, U = torch.linalg.eigh(0.5 * (Sigma + Sigma.T))
        return cls(mean, lam.flip(0).clamp(min=0), U.flip(1), shape, rank)

    @property
    def d(self) -> int:
        return self.mean.numel()

    def _params(self, x):
        """(mu, lam, U) on x's device and dtype, converted once per (device, dtype) and cached."""
        _check_layout(x, self.shape, "GaussianDenoiser")
        key = (x.device, x.dtype)
        cache = self.__dict__.setdefault("_cast", {})
        if key not in cache:
            cache[key] = tuple(t.to(x.device, x.dtype) for t in (self.mean, self.lam, self.U))
        return cache[key]

    def shrinkage(self, sigma) -> torch.Tensor:
        """The per-component factors lam_k / (lam_k + sigma^2), shape (..., r) for sigma of shape (...)."""
        s = torch.as_tensor(sigma, dtype=self.lam.dtype, device=self.lam.device)
        return self.lam / (self.lam + s[..., None] ** 2)

    # ------------------------------------------------------------------ D, VP form, Jacobian
    def denoise(self, x, sigma):
        mu, lam, U = self._params(x)
        y = x.reshape(x.shape[0], -1) - mu
        c = (y @ U) * (lam / (lam + sigma[:, None] ** 2))
        return (mu + c @ U.T).reshape(x.shape)

    def denoise_vp(self, x_t: torch.Tensor, alpha_bar) -> torch.Tensor:
        """x0_hat of a VP point x_t = sqrt(ab) x0 + sqrt(1 - ab) eps (see module doc)."""
        x_t = check_images(x_t, "x_t")
        ab = torch.as_tensor(alpha_bar, dtype=x_t.dtype, device=x_t.device).expand(x_t.shape[0])
        if bool(((ab <= 0) | (ab >= 1)).any()):
            raise ValueError(f"alpha_bar must lie in (0, 1), got {ab.min().item()!r} .. {ab.max().item()!r}")
        mu, lam, U = self._params(x_t)
        a = ab.sqrt()[:, None]
        y = x_t.reshape(x_t.shape[0], -1) - a * mu
        c = (y @ U) * (a * lam / (ab[:, None] * lam + 1 - ab[:, None]))
        return (mu + c @ U.T).reshape(x_t.shape)

    def eps_vp(self, x_t: torch.Tensor, alpha_bar) -> torch.Tensor:
        """DDIM's noise prediction eps_hat = (x_t - sqrt(ab) x0_hat) / sqrt(1 - ab)."""
        ab = torch.as_tensor(alpha_bar, dtype=x_t.dtype, device=x_t.device).expand(x_t.shape[0])
        ab = sigma_view(ab, x_t)
        return (x_t - ab.sqrt() * self.denoise_vp(x_t, alpha_bar)) / (1 - ab).sqrt()

    def jacobian(self, sigma: float) -> torch.Tensor:
        """The (d, d) Jacobian dD/dx = Sigma (Sigma + sigma^2 I)^-1 = U diag(lam/(lam+sigma^2)) U^T;
        row i is the receptive field of pixel i (Sec. "Receptive fields")."""
        if not float(sigma) > 0:
            raise ValueError(f"sigma must be > 0, got {sigma!r}")
        return (self.U * self.shrinkage(float(sigma))) @ self.U.T

    def covariance(self) -> torch.Tensor:
        """The (rank-truncated) covariance U diag(lam) U^T, (d, d)."""
        return (self.U * self.lam) @ self.U.T

    def __repr__(self):
        return f"GaussianDenoiser(shape={self.shape}, rank={self.rank})"


def kmeans(X: torch.Tensor, k: int, iters: int = 50, generator: torch.Generator | None = None,
           chunk_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on rows of X (N, d), k-means++ seeding; returns (centers (k, d), labels (N,)).

    Distances are computed in chunks of ``chunk_size`` rows. An emptied cluster is re-seeded at the
    point farthest from its center.
    """
    if X.ndim != 2:
        raise ValueError(f"X must have shape (N, d), got {tuple(X.shape)}")
    N = X.shape[0]
    k = as_int(k, f"k (number of clusters, N={N} points)", 1, N)
    g = generator if generator is not None else torch.Generator().manual_seed(0)

    def assign(C):
        d2, lab = [], []
        for i in range(0, N, chunk_size):
            dist = torch.cdist(X[i:i + chunk_size], C) ** 2
            v, j = dist.min(1)
            d2.append(v)
            lab.append(j)
        return torch.cat(d2), torch.cat(lab)

    idx = [int(torch.randint(N, (1,), generator=g))]
    d2 = ((X - X[idx[0]]) ** 2).sum(1)
    for _ in range(1, k):  # k-means++: sample proportional to squared distance
        p = (d2 / d2.sum()).cpu() if float(d2.sum()) > 0 else torch.full((N,), 1.0 / N)
        j = int(torch.multinomial(p.double(), 1, generator=g))
        idx.append(j)
        d2 = torch.minimum(d2, ((X - X[j]) ** 2).sum(1))
    C = X[idx].clone()
    labels = None
    for _ in range(iters):
        d2, new = assign(C)
        if labels is not None and bool((new == labels).all()):
            break
        labels = new
        counts = torch.bincount(labels, minlength=k)
        sums = torch.zeros_like(C).index_add_(0, labels, X)
        for j in torch.nonzero(counts == 0).flatten().tolist():
            far = int(d2.argmax())
            sums[j], counts[j], d2[far] = X[far], 1, 0
        C = sums / counts[:, None].to(X.dtype)
    return C, assign(C)[1]


def _svd_stats(Xj: torch.Tensor, r: int):
    """Mean, top-r eigenvalues (padded with 0) and eigenvectors (d, r) of the covariance (correction 1)
    of the rows of Xj (n, d), n <= d, from the thin SVD X_c = V S U^T: Sigma = U diag(S^2/(n-1)) U^T."""
    Xj = Xj.double()
    n, d = Xj.shape
    mean = Xj.mean(0)
    _, S, Vh = torch.linalg.svd(Xj - mean, full_matrices=False)   # S (n,), Vh (n, d)
    lam = torch.zeros(r, dtype=Xj.dtype, device=Xj.device)
    U = torch.zeros(d, r, dtype=Xj.dtype, device=Xj.device)
    k = min(r, n)
    lam[:k] = S[:k] ** 2 / (n - 1)
    U[:, :k] = Vh[:k].T
    return mean, lam, U


class GaussianMixtureDenoiser(Denoiser):
    """Posterior mean of a Gaussian mixture sum_j pi_j N(mu_j, U_j diag(lam_j) U_j^T) (Chapter 2).

    ``means`` (K, d), ``lams`` (K, r), ``Us`` (K, d, r), ``weights`` (K,) summing to 1. Each
    component is rank-truncated like :class:`GaussianDenoiser` (zero variance off its r directions;
    pad ``lams`` with zeros for components of lower rank; trailing all-zero columns are dropped,
    which changes nothing), so its noised covariance is
    U diag(lam + sigma^2) U^T + sigma^2 (I - U U^T), with log-determinant
    sum_k log(lam_k + sigma^2) + (d - r) log sigma^2.
    """

    def __init__(self, means, lams, Us, weights, shape):
        self.means, self.lams, self.Us = torch.as_tensor(means), torch.as_tensor(lams), torch.as_tensor(Us)
        self.weights = torch.as_tensor(weights, dtype=self.means.dtype)
        self.shape = tuple(int(s) for s in shape)
        K, d = self.means.shape
        if d != math.prod(self.shape) or self.Us.shape[:2] != (K, d) or self.lams.shape != (K, self.Us.shape[2]):
            raise ValueError(f"inconsistent shapes: means {tuple(self.means.shape)}, lams {tuple(self.lams.shape)}, "
                             f"Us {tuple(self.Us.shape)} for image shape {self.shape}; expected (K, d), (K, r), (K, d, r)")
        r_eff = int((self.lams > 0).any(0).nonzero().max()) + 1 if bool((self.lams > 0).any()) else 1
        if r_eff < self.lams.shape[1]:  # trailing columns with lam = 0 in every component: dropping them
            self.lams, self.Us = self.lams[:, :r_eff], self.Us[:, :, :r_eff]  # is exact (zero variance = off-rank)
        if self.weights.shape != (K,) or bool((self.weights <= 0).any()):
            raise ValueError(f"weights must be ({K},) and > 0, got {self.weights}")
        self.weights = self.weights / self.weights.sum()

    @classmethod
    def from_labels(cls, train_images, labels, rank: int | None = None, **stats_kwargs) -> "GaussianMixtureDenoiser":
        """One Gaussian per label (e.g. per class, or per k-means cluster), weights = label frequencies."""
        from ..stats import dataset_stats

        X = _flat(train_images)
        check_finite(train_images, "train_images")
        labels = torch.as_tensor(labels).to(train_images.device)
        if labels.shape != (X.shape[0],):
            raise ValueError(f"labels must have shape ({X.shape[0]},), got {tuple(labels.shape)}")
        classes = torch.unique(labels).tolist()
        r = _check_rank(rank, X.shape[1])
        means, lams, Us, w = [], [], [], []
        for c in classes:
            sel = train_images[labels == c]
            if sel.shape[0] < 2:
                raise ValueError(f"label {c} has {sel.shape[0]} image(s); each component needs >= 2")
            if sel.shape[0] <= X.shape[1]:  # n_j <= d: thin SVD of the centred (n_j, d) block, O(n_j^2 d)
                mean, lam, U = _svd_stats(sel.reshape(sel.shape[0], -1), r)
            else:
                st = dataset_stats(sel, **stats_kwargs)
                mean, lam, U = st.mean, st.lam[:r], st.U[:, :r]
            means.append(mean)
            lams.append(lam)
            Us.append(U)
            w.append(float(sel.shape[0]))
        return cls(torch.stack(means), torch.stack(lams), torch.stack(Us), w, train_images.shape[1:])

    @classmethod
    def from_kmeans(cls, train_images, k: int, rank: int | None = None, generator=None, iters: int = 50,
                    **stats_kwargs) -> "GaussianMixtureDenoiser":
        """k-means clusters (:func:`kmeans`), then one Gaussian per cluster."""
        _, lab = kmeans(_flat(train_images).double(), k, iters=iters, generator=generator)
        return cls.from_labels(train_images, lab, rank, **stats_kwargs)

    def responsibilities(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """w_j(x) = softmax_j(log pi_j + log N(x; mu_j, Sigma_j + sigma^2 I)), shape (B, K)."""
        x = check_query(x)
        return self._posterior(x, sigma_batch(sigma, x))[0]

    def _posterior(self, x, sigma):
        _check_layout(x, self.shape, "GaussianMixtureDenoiser")
        mu, lam, U = (t.to(x.device, x.dtype) for t in (self.means, self.lams, self.Us))
        B, d = x.shape[0], mu.shape[1]
        y = x.reshape(B, 1, d) - mu[None]                       # (B, K, d)
        c = torch.einsum("bkd,kdr->bkr", y, U)                  # (B, K, r)
        s2 = (sigma ** 2)[:, None, None]
        var = lam[None] + s2                                    # (B, K, r)
        perp = (y * y).sum(-1) - (c * c).sum(-1)                # |(I - UU^T) y|^2
        quad = (c * c / var).sum(-1) + perp.clamp_min(0) / s2[..., 0]
        logdet = torch.log(var).sum(-1) + (d - U.shape[2]) * torch.log(s2[..., 0])
        logit = torch.log(self.weights.to(x.device, x.dtype))[None] - 0.5 * (quad + logdet)
        return torch.softmax(logit, -1), mu, c, lam, U, s2

    def denoise(self, x, sigma):
        w, mu, c, lam, U, s2 = self._posterior(x, sigma)
        Dj = mu[None] + torch.einsum("bkr,kdr->bkd", c * lam[None] / (lam[None] + s2), U)
        return (w[..., None] * Dj).sum(1).reshape(x.shape)

    def __repr__(self):
        return f"GaussianMixtureDenoiser(K={self.means.shape[0]}, rank={self.Us.shape[2]}, shape={self.shape})"
