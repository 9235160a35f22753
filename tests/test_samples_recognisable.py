"""The committed MNIST UNets draw recognisable digits with the Heun sampler (issue: reference networks).

"Recognisable" is judged by two independent readers that both see real digits only: a small CNN
classifier trained here on MNIST train_5k (about 96 % test accuracy) and the majority label of the 10
nearest training images. A sample counts as a recognised digit when the two readers name the same
digit. Measured (32 seeds, 18 Heun steps): held-out test digits 0.92, each committed MNIST UNet
0.75, samples of the Wiener (Gaussian) denoiser, blurry superpositions of digits, 0.47. The Kamb & Ganguli local ResNet is expected to fail
(its 17-pixel receptive field draws strokes that do not add up to digits, Chapter 5); the test
records that it is read as a digit less often than the UNet is (measured 0.44).
"""
import pytest
import torch
from torch import nn

from course_lib.denoisers import GaussianDenoiser, IdealDenoiser
from course_lib.nets import list_pretrained, load_pretrained
from course_lib.sampling import sample
from course_lib.schedules import karras_sigmas

UNETS = [n for n in list_pretrained() if n.startswith("mnist_unet")]
N_SEEDS = 32
GRID = karras_sigmas(18, 0.002, 80.0)


@pytest.fixture(scope="module")
def readers():
    from conftest import _require_data
    from course_lib.data import load_dataset

    _require_data("mnist", "mnist_train_5k.npz")
    x, y = load_dataset("mnist", split="train_5k")
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(32 * 49, 10))
    opt, g = torch.optim.Adam(cnn.parameters(), 1e-3), torch.Generator().manual_seed(0)
    for _ in range(400):
        i = torch.randint(len(x), (128,), generator=g)
        loss = nn.functional.cross_entropy(cnn(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    cnn.eval()
    knn = IdealDenoiser(x)

    def recognised(imgs):
        with torch.no_grad():
            a = cnn(imgs).argmax(1)
        b = torch.mode(y[knn.nearest(imgs, k=10)[1]], 1).values
        return (a == b).float().mean().item()

    test, _ = load_dataset("mnist", split="test", n=256)
    wiener = GaussianDenoiser.from_data(x)
    return recognised, recognised(test), recognised(_samples(wiener))


def _samples(D):
    x_T = GRID[0] * torch.randn(N_SEEDS, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    return sample(D, x_T, GRID, solver="heun").clamp(-1, 1)


def test_readers_recognise_real_digits_and_reject_blurry_ones(readers):
    _, real, wiener = readers
    assert real > 0.85, real
    assert wiener < real - 0.3, (wiener, real)


@pytest.mark.parametrize("name", UNETS)
def test_unet_samples_are_recognisable_digits(name, readers):
    recognised, real, wiener = readers
    frac = recognised(_samples(load_pretrained(name)))
    assert frac >= 0.65, f"{name}: {frac:.2f} of samples read as digits (real test digits {real:.2f})"
    assert frac > wiener + 0.15, (frac, wiener)


def test_local_resnet_is_read_as_a_digit_less_often_than_the_unet(readers):
    recognised, _, _ = readers
    if not {"mnist_resnet_book", "mnist_unet_book"} <= set(list_pretrained()):
        pytest.fail("missing committed MNIST checkpoints")
    r_res, r_unet = (recognised(_samples(load_pretrained(n))) for n in ("mnist_resnet_book", "mnist_unet_book"))
    assert r_res < r_unet, (r_res, r_unet)
