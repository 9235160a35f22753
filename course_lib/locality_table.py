"""Chapter 4 experiments: Table 1 of Lukoianov et al. (2025) on the course's networks, the pixel-permuted
network, and the figures of the chapter.

**Table 1** (:func:`table1_machines`, :func:`table1_vs_paper`): every analytic model and a second
network sample from the same noise seeds as a reference network, with the same sampler, and we report
the per-seed r^2 and MSE of the final samples against the reference's (``course_lib.compare``; the
paper's metric, :mod:`course_lib.metrics`). The models, all on the reference's own training images:
Optimal (:class:`IdealDenoiser`), Wiener (:class:`GaussianDenoiser`), Kamb & Ganguli's boundary-broken
ELS machine with the network's calibrated P(sigma) (Chapter 5), Niedoba et al.'s PSPC-Square
(:class:`PatchSetDenoiser` with :func:`niedoba_schedule`) and the data-local denoiser with Wiener masks
(:class:`DataLocalDenoiser`, tau of :data:`course_lib.locality.TAU`). Sampler: the paper's code uses
DDIM (eta = 0) with 10 steps on DDPM's linear-beta schedule; we use the same steps, as VE sigmas
(:func:`paper_sigmas`; diffusers' default "leading" spacing, our choice: the paper does not say).

**Permuted pixels** (:func:`permuted_fields`): the network trained on pixel-permuted MNIST
(``mnist_perm_unet_book``) is asked for its sensitivity field at permuted pixel p = pi^-1(q); the
field is mapped back to the original pixel order and compared with the original data's Wiener field
at q (locality that follows the data), and, left permuted, with the Wiener field of the original
data at p (locality that would come from the architecture's convolutions).
"""
from __future__ import annotations

import torch

__all__ = ["PAPER_TABLE1", "paper_sigmas", "table1_machines", "table1_vs_paper", "permuted_fields",
           "permutation_scores", "plot_field_rows"]

# Lukoianov et al. (2025), Table 1 as proposed in the rebuttal: r^2 and MSE (mean +- std over samples)
PAPER_TABLE1 = {
    "MNIST": {"Optimal": (0.187, 0.231), "Wiener": (0.469, 0.161), "ELS (K&G)": (0.283, 0.227),
              "Niedoba": (0.301, 0.214), "Data-local": (0.491, 0.153), "Another network": (0.969, 0.007)},
    "CIFAR10": {"Optimal": (-0.549, 0.191), "Wiener": (0.408, 0.032), "ELS (K&G)": (0.303, 0.065),
                "Niedoba": (0.523, 0.049), "Data-local": (0.589, 0.028), "Another network": (0.852, 0.023)},
}


def paper_sigmas(n_steps: int = 10, spacing: str = "leading") -> torch.Tensor:
    """VE sigmas of DDIM with ``n_steps`` on DDPM's linear betas (1e-4 .. 0.02, T = 1000), final 0."""
    from .schedules import ddim_sigmas, linear_beta_alpha_bar

    return ddim_sigmas(n_steps, linear_beta_alpha_bar(), spacing=spacing)


def table1_machines(train_images: torch.Tensor, calibration=None, tau: float = 0.005,
                    include=("Optimal", "Wiener", "ELS (K&G)", "Niedoba", "Data-local"),
                    n_els: int | None = None) -> dict:
    """{name: denoiser} of the analytic models of Table 1 on ``train_images`` (module doc).
    ``calibration``: a Chapter 5 :class:`course_lib.creativity.NetworkCalibration` (needed for ELS);
    ``n_els``: give the ELS machine only the first ``n_els`` images (its cost on a CPU; None: all)."""
    from .denoisers import DataLocalDenoiser, GaussianDenoiser, IdealDenoiser, PatchSetDenoiser
    from .denoisers.patchset import niedoba_schedule
    from .locality import WienerMasks

    gauss = GaussianDenoiser.from_data(train_images)
    out = {}
    for k in include:
        if k == "Optimal":
            out[k] = IdealDenoiser(train_images)
        elif k == "Wiener":
            out[k] = gauss
        elif k == "ELS (K&G)":
            if calibration is None:
                raise ValueError("the ELS machine needs the network's calibration (Chapter 5); pass calibration=")
            from .creativity import machine_factory
            out[k] = machine_factory("ELS", train_images[:n_els], "zeros")(calibration["ELS"])
        elif k == "Niedoba":
            out[k] = PatchSetDenoiser(train_images, niedoba_schedule(train_images.shape[-1]))
        elif k == "Data-local":
            out[k] = DataLocalDenoiser(train_images, WienerMasks(gauss, tau))
        else:
            raise ValueError(f"unknown model {k!r}; known: Optimal, Wiener, ELS (K&G), Niedoba, Data-local")
    return out


def table1_vs_paper(comparisons: dict, paper: dict | None = None, ci: float = 0.95, n_boot: int = 2000) -> str:
    """Markdown table: per dataset and model our median r^2 and MSE [bootstrap CI] over seeds, with the
    paper's mean r^2 / MSE beside them. ``comparisons``: {dataset: :class:`course_lib.compare.Comparison`}."""
    paper = PAPER_TABLE1 if paper is None else paper
    lines = ["| Dataset | Model | Seeds | $r^2$ (ours) [CI] | MSE (ours) [CI] | $r^2$ (paper) | MSE (paper) |",
             "|---|---|---|---|---|---|---|"]
    for ds, comp in comparisons.items():
        for name in comp.names:
            (r, rl, rh), (m, ml, mh) = comp.median(name, "r2", ci=ci, n_boot=n_boot), comp.median(name, "mse", ci=ci, n_boot=n_boot)
            p = paper.get(ds, {}).get(name)
            pr, pm = (f"{p[0]:.3f}", f"{p[1]:.3f}") if p else ("-", "-")
            lines.append(f"| {ds} | {name} | {len(comp.seeds)} | {r:.3f} [{rl:.3f}, {rh:.3f}] | "
                         f"{m:.3f} [{ml:.3f}, {mh:.3f}] | {pr} | {pm} |")
    return "\n".join(lines)


def permuted_fields(net, perm: torch.Tensor, x0: torch.Tensor, sigma: float, pixels, n_noise: int = 1,
                    generator: torch.Generator | None = None) -> dict:
    """Sensitivity fields of a network trained on pixel-permuted images (module doc).

    ``x0``: ORIGINAL-order images (N, 1, H, W); ``pixels``: original (i, j) pixels q. The network sees
    permute_pixels(x0 + sigma z) and is differentiated at p = pi^-1(q). Returns {"raw": fields in the
    network's (permuted) order, "unpermuted": the same in original order, "p": (Q,) permuted flat indices}.
    """
    from .jacobian import as_pixels, average_sensitivity
    from .permute import permute_pixels, unpermute_pixels

    C, H, W = x0.shape[1:]
    q = as_pixels(pixels, (C, H, W))
    flat_q = q[:, 1] * W + q[:, 2]
    inv = torch.argsort(perm)
    p = inv[flat_q]                                             # permuted position holding original q
    xp = permute_pixels(x0, perm)
    f = average_sensitivity(net, xp, float(sigma), [(int(v) // W, int(v) % W) for v in p], n_noise=n_noise,
                            generator=generator).mean
    return {"raw": f, "unpermuted": unpermute_pixels(f, perm), "p": p}


def permutation_scores(fields: dict, gaussian, sigma: float, pixels, radius: int = 3) -> dict:
    """Does the permuted network's field follow the data or the architecture? (module doc)

    ``fields``: the output of :func:`permuted_fields`; ``gaussian``: the ORIGINAL data's Wiener filter.
    With the output pixel's own entry removed (:func:`course_lib.locality.without_center`), returns the
    mean over pixels of: ``cos_data`` = cos(un-permuted field, Wiener field at q); ``cos_arch`` =
    cos(field as the network sees it, Wiener field of the original data at the same position p);
    ``local_unpermuted`` / ``local_seen`` / ``local_wiener``: :func:`course_lib.locality.local_mass`
    within ``radius`` of q, of p, and of q for the Wiener field.
    """
    from .locality import field_similarity, local_mass, wiener_fields, without_center

    W = fields["raw"].shape[-1]
    p_pix = [(int(v) // W, int(v) % W) for v in fields["p"]]
    w_q, w_p = wiener_fields(gaussian, sigma, pixels).cpu(), wiener_fields(gaussian, sigma, p_pix).cpu()
    un, raw = fields["unpermuted"].double().cpu(), fields["raw"].double().cpu()
    return {"sigma": float(sigma),
            "cos_data": field_similarity(without_center(un, pixels), without_center(w_q, pixels)).mean().item(),
            "cos_arch": field_similarity(without_center(raw, p_pix), without_center(w_p, p_pix)).mean().item(),
            "local_unpermuted": local_mass(un, pixels, radius).mean().item(),
            "local_seen": local_mass(raw, p_pix, radius).mean().item(),
            "local_wiener": local_mass(w_q, pixels, radius).mean().item()}


def plot_field_rows(rows: dict, pixels, titles=None, axes=None, cmap="RdBu_r"):
    """One row of panels per entry of ``rows`` ({label: (Q, 1, H, W) fields}), one column per pixel, each
    panel scaled symmetrically to its own max |.|; the output pixel is marked. Returns the figure."""
    import matplotlib.pyplot as plt

    labels = list(rows)
    Q = next(iter(rows.values())).shape[0]
    if axes is None:
        fig, axes = plt.subplots(len(labels), Q, figsize=(1.6 * Q + 1.2, 1.6 * len(labels) + 0.3), squeeze=False)
    fig = axes[0][0].figure
    for r, lab in enumerate(labels):
        for c in range(Q):
            f = rows[lab][c, 0].detach().double().cpu()
            v = float(f.abs().max()) or 1.0
            ax = axes[r][c]
            ax.imshow(f, cmap=cmap, vmin=-v, vmax=v)
            if pixels is not None:
                i, j = pixels[c]
                ax.plot(j, i, "k+", ms=6)
            ax.set_xticks([]); ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(lab, fontsize=10)
            if r == 0 and titles is not None:
                ax.set_title(titles[c], fontsize=10)
    fig.tight_layout()
    return fig
