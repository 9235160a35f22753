"""course_lib.wavelet_experiments (Chapter 6 helpers)."""
import pytest
import torch

from course_lib.denoisers import FunctionDenoiser
from course_lib.compare import compare
from course_lib.wavelet_experiments import coupling_mask, denoising_mse, energy_compaction, relative_gain
from course_lib.wavelets import coeff_layout, idwt2_packed


def test_coupling_masks():
    m = coupling_mask("independent", 28, 28, 2, "h", 1, 5, 8)
    assert int((m == 2).sum()) == 1 and int((m == 1).sum()) == 0
    m = coupling_mask("band_tied", 28, 28, 2, "v", 1, 5, 8)
    lay = coeff_layout(28, 28, 2)
    partners = {int(lay.index(b, 1, 5, 8)) for b in ("h", "d")}
    assert set(torch.nonzero(m.flatten() == 1).flatten().tolist()) == partners
    m = coupling_mask("local_coupled", 28, 28, 2, "d", 2, 0, 0, radius=1)       # wraps around the 7x7 band
    assert int((m == 1).sum()) == 8 and int(m.flatten()[lay.index("d", 2, -1, -1)]) == 1
    m = coupling_mask("band_tied", 28, 28, 2, "a", 2, 3, 3)                     # the approximation stands alone
    assert int((m == 1).sum()) == 0


def test_denoising_mse_shared_noise():
    x = torch.zeros(10, 1, 4, 4)
    ident = FunctionDenoiser(lambda x, s: x)
    zero = FunctionDenoiser(lambda x, s: torch.zeros_like(x))
    out = denoising_mse({"id": ident, "zero": zero}, x, [0.5, 2.0], seed=3, batch_size=3)
    z = torch.randn(2, 10, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    expect = torch.stack([(0.25 * z[0] ** 2).mean(), (4 * z[1] ** 2).mean()]).double()
    assert torch.allclose(out["id"], expect, rtol=1e-5) and torch.equal(out["zero"], torch.zeros(2, dtype=torch.float64))
    assert torch.allclose(relative_gain(out["id"], out["id"] / 4), torch.full((2,), 0.75, dtype=torch.float64))
    with pytest.raises(ValueError, match="sigmas"):
        denoising_mse({"id": ident}, x, [0.0])


def test_energy_compaction_of_a_wavelet_atom():
    c = torch.zeros(2, 1, 8, 8, dtype=torch.float64)
    c[0, 0, 5, 6], c[1, 0, 1, 2] = 1.0, -1.0                     # two haar atoms; mean image removed inside
    x = idwt2_packed(c, "haar", 2)
    e = energy_compaction(x, 2 / 64, "haar", 2)
    assert e["wavelets"] == pytest.approx(1.0) and e["pixels"] < 0.9
    with pytest.raises(ValueError, match="fraction"):
        energy_compaction(x, 0.0)


def test_compare_drops_runaway_samplers():
    ref = FunctionDenoiser(lambda x, s: 0.5 * x)
    fine = FunctionDenoiser(lambda x, s: 0.4 * x)
    runaway = FunctionDenoiser(lambda x, s: x * float("inf"))
    args = ({"fine": fine, "runaway": runaway}, ref, torch.tensor([2.0, 1.0, 0.0]), range(2), (1, 4, 4))
    with pytest.raises(ValueError, match="runaway"):
        compare(*args, solver="euler", cache=False)
    out = compare(*args, solver="euler", cache=False, on_nonfinite="drop")
    assert list(out.dropped) == ["runaway"] and out.names == ["fine"] and "runaway" not in out.samples
    assert "step" in out.dropped["runaway"]                                          # the reason names the step
    assert torch.isfinite(out.r2["fine"]).all() and out.median("fine")[0] > 0.5       # proportional samples
    print(out)                                                                       # the table does not raise
