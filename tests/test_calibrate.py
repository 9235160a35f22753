"""Patch-size calibration recovers the known schedule of a reference ELS machine (Chapter 5)."""
import pytest
import torch

from course_lib.calibrate import PatchSizeSchedule, calibrate_patch_size, similarity
from course_lib.denoisers import EquivariantLocalDenoiser, LocalDenoiser
from course_lib.schedules import karras_sigmas


def setup_data(seed=0, N=6, H=8):
    g = torch.Generator().manual_seed(seed)
    Y = torch.rand(N, 1, H, H, generator=g, dtype=torch.float64) * 2 - 1
    x_T = torch.randn(5, 1, H, H, generator=g, dtype=torch.float64)
    return Y, x_T


def true_schedule(sigma):
    return 7 if sigma > 2.0 else 5 if sigma > 0.3 else 3


@pytest.mark.parametrize("metric,target", [("l2", "x0"), ("cosine", "eps"), ("cosine", "x0")])
def test_recovers_known_els_schedule(metric, target):
    Y, x_T = setup_data()
    sigmas = karras_sigmas(10, 0.05, 10.0).double()
    ref = EquivariantLocalDenoiser(Y, true_schedule, boundary="zeros")
    res = calibrate_patch_size(ref, lambda P: EquivariantLocalDenoiser(Y, P, boundary="zeros"),
                               sigmas[0] * x_T, sigmas, candidates=[1, 3, 5, 7, 9], metric=metric,
                               target=target)
    expected = [true_schedule(float(s)) for s in sigmas[:-1]]
    assert res.schedule.patch_sizes == expected
    assert res.scores.shape == (10, 5, 5) and res.best.shape == (10, 5)
    # every seed picks the true P at every step (the true machine matches exactly)
    assert torch.equal(res.best, torch.tensor(expected).unsqueeze(1).expand(-1, 5))
    for s, P in zip(sigmas[:-1], expected):
        assert res.schedule(float(s)) == P


def test_calibrating_ls_against_ls_reference_and_trajectory():
    Y, x_T = setup_data(1)
    sigmas = karras_sigmas(6, 0.1, 5.0).double()
    ref = LocalDenoiser(Y, 5)
    res = calibrate_patch_size(ref, lambda P: LocalDenoiser(Y, P), sigmas[0] * x_T, sigmas,
                               candidates=[3, 5, 7], metric="l2", target="x0")
    assert res.schedule.patch_sizes == [5] * 6
    assert res.trajectory.x.shape[0] == 7 and torch.equal(res.trajectory.x[0], sigmas[0] * x_T)
    again = calibrate_patch_size(ref, lambda P: LocalDenoiser(Y, P), sigmas[0] * x_T, sigmas,
                                 candidates=[3, 5, 7], metric="l2", target="x0", trajectory=res.trajectory)
    assert torch.equal(again.scores, res.scores)


def test_median_over_seeds_is_a_candidate():
    """Seeds that disagree: the lower median of their choices is returned."""
    Y, x_T = setup_data(2)
    sigmas = torch.tensor([1.0, 0.0], dtype=torch.float64)
    ref_a = EquivariantLocalDenoiser(Y, 3, boundary="zeros")
    ref_b = EquivariantLocalDenoiser(Y, 7, boundary="zeros")

    def mixed(x, s):  # seeds 0, 1 follow P = 3, seeds 2, 3, 4 follow P = 7
        return torch.cat([ref_a(x[:2], s[:2]), ref_b(x[2:], s[2:])])

    res = calibrate_patch_size(mixed, lambda P: EquivariantLocalDenoiser(Y, P, boundary="zeros"),
                               x_T, sigmas, candidates=[3, 5, 7], metric="l2", target="x0")
    assert res.best[0].tolist() == [3, 3, 7, 7, 7]
    assert res.schedule.patch_sizes == [7]


def test_schedule_lookup_save_load(tmp_path):
    sch = PatchSizeSchedule([10.0, 1.0, 0.1], [9, 5, 3])
    assert [sch(s) for s in (80.0, 3.5, 2.0, 0.35, 0.3, 0.001)] == [9, 9, 5, 5, 3, 3]
    sch.save(tmp_path / "s.json")
    assert PatchSizeSchedule.load(tmp_path / "s.json") == sch
    with pytest.raises(ValueError, match="patch_sizes"):
        PatchSizeSchedule([1.0], [4])
    with pytest.raises(ValueError, match="sigmas"):
        PatchSizeSchedule([1.0, -1.0], [3, 3])


def test_similarity_and_bad_arguments():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[0.0, 2.0], [2.0, 2.0]])
    torch.testing.assert_close(similarity(a, b, "cosine"), torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(similarity(a, b, "l2"), torch.tensor([2.5, 1.0]))
    Y, x_T = setup_data()
    m = lambda P: LocalDenoiser(Y, P)  # noqa: E731
    with pytest.raises(ValueError, match="metric"):
        calibrate_patch_size(m(3), m, x_T, [1.0, 0.0], [3], metric="l1")
    with pytest.raises(ValueError, match="sigmas"):
        calibrate_patch_size(m(3), m, x_T, [0.5, 1.0], [3])
    with pytest.raises(ValueError, match="candidates"):
        calibrate_patch_size(m(3), m, x_T, [1.0, 0.0], [2])
