"""Chapter 3's claims about the committed networks trained on disjoint halves of MNIST train_5k.

1. Two UNets trained (with different seeds) on disjoint random halves draw nearly the same image from
   the same noise: their same-seed r^2 is far above that of the two halves' ideal (memorizing)
   denoisers, whose samples are training images of different halves.
2. Consistency needs shared moments: the even / odd positions of MNIST's stored order have different
   means, and the Wiener samplers of those halves disagree several times more than those of random
   halves (mean squared difference), as do the networks trained on them.

Measured with the committed checkpoints (16 seeds, 12-step Heun grid): random halves, networks median
r^2 0.84 [0.75, 0.92] vs ideal machines 0.08; parity halves, mean-image distance 3.65 vs 0.38, Wiener
MSE 0.059 vs 0.0088, network MSE 0.19 vs 0.071. The thresholds leave about a factor two of margin.
"""
import pytest

from course_lib.compare import compare
from course_lib.creativity import network_training_images
from course_lib.denoisers import GaussianDenoiser, IdealDenoiser
from course_lib.nets import list_pretrained, load_pretrained
from course_lib.schedules import karras_sigmas

RANDOM = ("mnist_unet_half_a_book", "mnist_unet_half_b_book")
PARITY = ("mnist_unet_even_book", "mnist_unet_odd_book")
GRID = karras_sigmas(12, 0.002, 80.0)
SEEDS = range(16)
SHAPE = (1, 28, 28)


def _pair(names, require_data):
    if not set(names) <= set(list_pretrained()):
        pytest.fail(f"missing committed checkpoints {names}")
    require_data("mnist")
    nets = [load_pretrained(n) for n in names]
    halves = [network_training_images(n) for n in nets]
    assert not set(nets[0].train_subset["indices"]) & set(nets[1].train_subset["indices"])  # disjoint
    return nets, halves


def _same_seed(a, b):
    return compare({"B": b}, a, GRID, SEEDS, SHAPE, reference_name="A", cache=False)


def test_networks_on_random_halves_agree_far_more_than_memorizers(require_data):
    (net_a, net_b), (half_a, half_b) = _pair(RANDOM, require_data)
    nets = _same_seed(net_a, net_b)
    ideal = _same_seed(IdealDenoiser(half_a), IdealDenoiser(half_b))
    r2_net, r2_ideal = nets.median("B")[0], ideal.median("B")[0]
    assert r2_net > 0.7, f"networks on disjoint halves: median same-seed r^2 {r2_net:.3f}"
    assert r2_net > r2_ideal + 0.4, f"networks {r2_net:.3f} vs ideal machines {r2_ideal:.3f}"
    assert (nets.r2["B"] > ideal.r2["B"]).float().mean() >= 0.9


def test_halves_with_different_moments_are_less_consistent(require_data):
    nets_r, (ra, rb) = _pair(RANDOM, require_data)
    nets_p, (pa, pb) = _pair(PARITY, require_data)
    # the parity halves' mean images differ several times more than the random halves'
    assert (pa.mean(0) - pb.mean(0)).norm() > 5 * (ra.mean(0) - rb.mean(0)).norm()
    wiener = {k: _same_seed(GaussianDenoiser.from_data(a, cache=False), GaussianDenoiser.from_data(b, cache=False))
              for k, (a, b) in {"random": (ra, rb), "parity": (pa, pb)}.items()}
    mse_r, mse_p = (wiener[k].mse["B"].mean().item() for k in ("random", "parity"))
    assert mse_p > 4 * mse_r, f"Wiener split MSE: parity {mse_p:.4f} vs random {mse_r:.4f}"
    net_mse = {k: _same_seed(*n).mse["B"].mean().item() for k, n in (("random", nets_r), ("parity", nets_p))}
    assert net_mse["parity"] > 1.5 * net_mse["random"], net_mse
