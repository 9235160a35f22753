"""Every committed checkpoint loads as a denoiser and beats the Wiener (Gaussian) denoiser of its own
training subset on held-out test images at low and middle sigma."""
import pytest
import torch

from course_lib.nets import list_pretrained, load_pretrained

NAMES = list_pretrained()


def test_some_checkpoints_are_committed():
    assert NAMES, "no checkpoints under data/checkpoints"


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_records_its_training_subset(name):
    D = load_pretrained(name)
    sub = D.train_subset
    assert sub["dataset"] and len(sub["indices"]) > 0
    assert D.command.startswith("python -m course_lib.train --config")
    assert len(D.losses) > 0 and D.losses[-1][1] < D.losses[0][1]  # the loss went down


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_beats_wiener_on_held_out_images(name, require_data):
    from course_lib.creativity import network_training_images
    from course_lib.data import load_dataset
    from course_lib.denoisers import GaussianDenoiser

    D = load_pretrained(name)
    sub = D.train_subset
    require_data(sub["dataset"])
    train = network_training_images(D)   # checks the recorded indices
    assert len(train) == len(sub["indices"])
    test, _ = load_dataset(sub["dataset"], split="test", n=256)
    sigmas = (0.1, 0.5)  # low and middle noise (data std is about 0.6 on MNIST)
    if sub.get("pixel_permute_seed") is not None:   # Chapter 4's network sees pixel-permuted images
        from course_lib.permute import permute_pixels, pixel_permutation
        test = permute_pixels(test, pixel_permutation(*test.shape[-2:], seed=sub["pixel_permute_seed"]))
    W = GaussianDenoiser.from_data(train)
    g = torch.Generator().manual_seed(0)
    for sigma in sigmas:
        x = test + sigma * torch.randn(test.shape, generator=g)
        err_net = (D(x, sigma) - test).square().mean().item()
        err_wiener = (W(x, sigma) - test).square().mean().item()
        assert err_net < err_wiener, f"{name} at sigma={sigma}: net MSE {err_net:.4f} >= Wiener {err_wiener:.4f}"
