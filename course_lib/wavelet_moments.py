"""Polynomial features, their moments, and the moments of noisy data (Chapter 6, Sec. "Stein's trick").

A feature map of degree K in m variables v = (v_1, .., v_m) is the list of all monomials
v^alpha = prod_i v_i^alpha_i with |alpha| = sum_i alpha_i <= K (p = C(m + K, K) of them, the
constant first). Everything the least-squares fit of a score needs is a *moment* of the noisy data,

    Gram:        E[phi_a phi_b]          = E[v^(alpha_a + alpha_b)]           (degree <= 2K),
    Stein RHS:  -E[d phi_a / d v_t]      = -alpha_a,t E[v^(alpha_a - e_t)]     (degree <= K - 1),

so we keep one table of the M = C(m + 2K, 2K) monomials of degree <= 2K (:class:`MonomialBasis`).

Noisy moments from clean ones. With v = c + sigma z, z ~ N(0, I) independent of c and white (the
wavelet transform is orthonormal), expanding each factor binomially,

    E[(c + sigma z)^alpha] = sum_{beta <= alpha} prod_i C(alpha_i, beta_i) sigma^(alpha_i - beta_i)
                                                   E[z^(alpha_i - beta_i)]  E[c^beta],

with E[z^r] = (r - 1)!! for even r and 0 for odd r. This is a sparse lower-triangular linear map
T(sigma) on the moment table (:func:`noise_transform`), so clean moments are computed once and each
noise level costs one sparse matrix product. For one variable it is the formula of the course notes,
m_r = sum_i C(r, i) sigma^(r-i) E[c^i] E[z^(r-i)].
"""
from __future__ import annotations

import math
from functools import lru_cache
from itertools import combinations_with_replacement

import torch

__all__ = ["monomials", "gaussian_moment", "MonomialBasis", "monomial_basis", "noise_transform",
           "noisy_moments", "poly_features", "hankel_gram"]


def gaussian_moment(r: int) -> int:
    """E[z^r] for z ~ N(0, 1): (r - 1)!! for even r >= 0, else 0."""
    if r < 0:
        raise ValueError(f"r must be >= 0, got {r}")
    return 0 if r % 2 else math.prod(range(r - 1, 0, -2))


def monomials(m: int, degree: int) -> list[tuple]:
    """Exponent tuples of all monomials in m variables of total degree <= ``degree``, graded order."""
    out = []
    for k in range(degree + 1):
        for combo in combinations_with_replacement(range(m), k):
            e = [0] * m
            for i in combo:
                e[i] += 1
            out.append(tuple(e))
    return out


class MonomialBasis:
    """Features of degree <= K in m variables and the moment table of degree <= 2K (module doc).

    Attributes (long tensors): ``feat`` (p, m) and ``mom`` (M, m) exponents; ``pair`` (p, p): the
    moment index of alpha_a + alpha_b; ``split`` (M, 2): one feature pair (a, b) whose product is
    moment k; ``deriv`` (m, p): the moment index of alpha_a - e_t (0 where alpha_a,t = 0, then
    ``deriv_coef`` is 0); ``deriv_coef`` (m, p) = alpha_a,t; ``sq`` (m,): the index of v_t^2.
    """

    def __init__(self, m: int, degree: int):
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ValueError(f"m (number of variables) must be an int >= 1, got {m!r}")
        if isinstance(degree, bool) or not isinstance(degree, int) or degree < 1:
            raise ValueError(f"degree must be an int >= 1, got {degree!r}")
        self.m, self.degree = m, degree
        feats = monomials(m, degree)
        p, M = len(feats), math.comb(m + 2 * degree, 2 * degree)
        if p * p > 4_000_000 or M > 2_000_000:
            raise ValueError(f"{m} variables at degree {degree} give {p} features and {M} moments; "
                             f"that is too many (lower degree or fewer coupled coefficients)")
        moms = monomials(m, 2 * degree)
        where = {e: k for k, e in enumerate(moms)}
        self.p, self.M = p, M
        self.feat = torch.tensor(feats, dtype=torch.long).reshape(p, m)
        self.mom = torch.tensor(moms, dtype=torch.long).reshape(M, m)
        pair = torch.empty(p, p, dtype=torch.long)
        split = torch.full((M, 2), -1, dtype=torch.long)
        for a in range(p):
            for b in range(a, p):
                k = where[tuple(x + y for x, y in zip(feats[a], feats[b]))]
                pair[a, b] = pair[b, a] = k
                if split[k, 0] < 0:
                    split[k, 0], split[k, 1] = a, b
        self.pair, self.split = pair, split
        deriv = torch.zeros(m, p, dtype=torch.long)
        coef = torch.zeros(m, p, dtype=torch.long)
        for t in range(m):
            for a, e in enumerate(feats):
                if e[t] > 0:
                    d = list(e)
                    d[t] -= 1
                    deriv[t, a], coef[t, a] = where[tuple(d)], e[t]
        self.deriv, self.deriv_coef = deriv, coef
        # degree layers for poly_features: feat[a] = feat[parent[a]] + e_var[a]
        fwhere = {e: k for k, e in enumerate(feats)}
        parent, var = torch.zeros(p, dtype=torch.long), torch.zeros(p, dtype=torch.long)
        for a, e in enumerate(feats[1:], start=1):
            i = next(t for t in range(m) if e[t] > 0)
            parent[a], var[a] = fwhere[tuple(x - (t == i) for t, x in enumerate(e))], i
        deg = self.feat.sum(1)
        self.parent, self.var = parent, var
        self.layers = [(int((deg < k).sum()), int((deg <= k).sum())) for k in range(1, degree + 1)]
        # in the graded lexicographic order, the degree-k monomials whose first variable is i are
        # contiguous, and their parents form a contiguous block of degree k - 1: one slice product each
        self.blocks = []
        for lo, hi in self.layers:
            for i in range(m):
                idx = torch.nonzero(var[lo:hi] == i).flatten() + lo
                if idx.numel():
                    a, b = int(idx[0]), int(idx[-1]) + 1
                    pa, pb = int(parent[a]), int(parent[b - 1]) + 1
                    assert b - a == idx.numel() and torch.equal(parent[a:b], torch.arange(pa, pb))
                    self.blocks.append((i, a, b, pa, pb))
        self.sq = torch.tensor([where[tuple(2 if i == t else 0 for i in range(m))] for t in range(m)])
        # sparse pattern of T(sigma): (row alpha, col beta, constant, power |alpha - beta|)
        rows, cols, const, power = [], [], [], []
        for k, al in enumerate(moms):
            for gam in _half_boxes(al):                       # alpha - beta = 2 gamma (odd moments vanish)
                be = tuple(a - 2 * g for a, g in zip(al, gam))
                rows.append(k)
                cols.append(where[be])
                const.append(math.prod(math.comb(a, b) * gaussian_moment(a - b) for a, b in zip(al, be)))
                power.append(2 * sum(gam))
        self._T = (torch.tensor(rows), torch.tensor(cols), torch.tensor(const, dtype=torch.float64),
                   torch.tensor(power, dtype=torch.float64))

    def __repr__(self):
        return f"MonomialBasis(m={self.m}, degree={self.degree}, p={self.p}, M={self.M})"


def _half_boxes(alpha):
    """All gamma with 0 <= 2 gamma_i <= alpha_i."""
    out = [()]
    for a in alpha:
        out = [g + (k,) for g in out for k in range(a // 2 + 1)]
    return out


@lru_cache(maxsize=32)
def monomial_basis(m: int, degree: int) -> MonomialBasis:
    """Cached :class:`MonomialBasis`."""
    return MonomialBasis(m, degree)


def noise_transform(basis: MonomialBasis, sigma: float, dtype=torch.float64, device=None) -> torch.Tensor:
    """The sparse (M, M) matrix T(sigma) with noisy moments = T(sigma) @ clean moments (module doc)."""
    if not float(sigma) >= 0:
        raise ValueError(f"sigma must be >= 0, got {sigma!r}")
    rows, cols, const, power = basis._T
    vals = const * float(sigma) ** power
    T = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (basis.M, basis.M),
                                check_invariants=True).coalesce()
    return T.to(device=device, dtype=dtype)


def noisy_moments(clean: torch.Tensor, basis: MonomialBasis, sigma: float) -> torch.Tensor:
    """Noisy moments (G, M) from clean moments (G, M) of G independent groups of m variables."""
    if clean.ndim != 2 or clean.shape[1] != basis.M:
        raise ValueError(f"clean must have shape (G, {basis.M}), got {tuple(clean.shape)}")
    T = noise_transform(basis, sigma, clean.dtype, clean.device)
    return torch.sparse.mm(T, clean.T).T


def poly_features(v: torch.Tensor, basis: MonomialBasis, features_first: bool = False) -> torch.Tensor:
    """phi(v) (..., p): all monomials of degree <= K of v (..., m); (p, ...) if ``features_first``.

    Built degree by degree: every monomial of degree k is a monomial of degree k - 1 (its ``parent``)
    times its first variable; in graded order these are contiguous blocks, so each block is one
    broadcast product of slices (no gathers)."""
    if v.shape[-1] != basis.m:
        raise ValueError(f"v must end in m={basis.m} variables, got shape {tuple(v.shape)}")
    vt = v.movedim(-1, 0).contiguous()                                            # (m, ...)
    out = v.new_empty(basis.p, *v.shape[:-1])
    out[0] = 1
    for i, a, b, pa, pb in basis.blocks:                                          # <= K * m slice products
        torch.mul(out[pa:pb], vt[i], out=out[a:b])
    return out if features_first else out.movedim(0, -1)


def hankel_gram(moments: torch.Tensor, K: int) -> torch.Tensor:
    """The (K+1, K+1) Hankel matrix H_ab = m_{a+b} of one variable's moments m_0 .. m_2K (..., 2K+1)."""
    a = torch.arange(K + 1)
    return moments[..., a[:, None] + a[None, :]]
