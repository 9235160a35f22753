"""Every score machine gives the same answer on every available device and dtype.

Reference: float64 on the CPU. Each machine is rebuilt on each device of ``DEVICES`` (the CPU, plus
CUDA when present) in float32 and compared with the reference, with tolerances set by float32
rounding (relative 1e-4 of the output scale; the streaming log-sum-exp is exact, so chunking must not
change the result either). On a CPU-only machine this checks float32 against float64; on a GPU
machine the same test checks the CUDA path unchanged.
"""
import pytest
import torch

from course_lib.denoisers import (DataLocalDenoiser, EquivariantLocalDenoiser, GaussianDenoiser, IdealDenoiser,
                                  LocalDenoiser)
from course_lib.locality import wiener_masks
from course_lib.sampling import sample
from course_lib.schedules import karras_sigmas

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
F64 = torch.float64


@pytest.fixture(scope="module")
def data():
    from course_lib.data import load_dataset

    train, _ = load_dataset("digits")                          # offline, (1797, 1, 8, 8)
    g = torch.Generator().manual_seed(0)
    x0 = train[:6].double()
    return train[:300].double(), x0, g


def _machines(train, device, dtype):
    t = train.to(device, dtype)
    masks = wiener_masks(train, 0.5, 0.02)                     # (64, 64) bool, computed once on the CPU
    return {
        # the data-local denoiser's sparse (CSR) and dense mask products, several chunks
        "data-local sparse": DataLocalDenoiser(t, masks, chunk_size=64, sparse_below=1.0),
        "data-local dense": DataLocalDenoiser(t, masks, chunk_size=64, sparse_below=0.0),
        "ideal": IdealDenoiser(t, chunk_size=64),              # several chunks: streaming path
        "gaussian": GaussianDenoiser.from_data(t, cache=False),
        "ELS": EquivariantLocalDenoiser(t, 3, boundary="zeros", chunk_size=64),
        "LS": LocalDenoiser(t, 5, boundary="zeros", chunk_size=64),
    }


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("sigma", [0.05, 0.5, 5.0])
def test_machines_agree_across_devices_and_dtypes(data, device, sigma):
    train, x0, g = data
    x = x0 + sigma * torch.randn(x0.shape, generator=g, dtype=F64)
    ref = {k: D(x, sigma) for k, D in _machines(train, "cpu", F64).items()}
    for k, D in _machines(train, device, torch.float32).items():
        out = D(x.to(device, torch.float32), sigma)
        assert out.device.type == device and out.dtype == torch.float32, k
        assert torch.isfinite(out).all(), k
        err = (out.double().cpu() - ref[k]).abs().max().item()
        # the posterior weights are a softmax of |x - y|^2 / (2 sigma^2): float32 rounding of the
        # distances is amplified by 1/sigma^2 (measured on the CPU: at most 8e-6, at sigma = 0.5)
        tol = 1e-4 + 1e-6 / sigma**2
        assert err < tol, (k, device, sigma, err)


@pytest.mark.parametrize("device", DEVICES)
def test_sampler_and_network_run_on_every_device(data, device, require_data):
    from course_lib.nets import load_pretrained

    require_data("mnist", "mnist_train_5k.npz")
    sig = karras_sigmas(8, 0.002, 80.0)
    x_T = sig[0] * torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    outs = {dev: sample(load_pretrained("mnist_unet_book", device=dev), x_T.to(dev), sig.to(dev), solver="heun").cpu()
            for dev in {"cpu", device}}
    assert all(torch.isfinite(o).all() for o in outs.values())
    assert (outs[device] - outs["cpu"]).abs().max() < 1e-2        # same network, float32 on both


@pytest.mark.parametrize("device", DEVICES)
def test_rmt_solver_on_every_device(device):
    from course_lib import rmt, rmt_mc

    s = rmt_mc.power_law_spectrum(200)
    lam = torch.logspace(-4, 1, 30, dtype=F64)
    ref = rmt.silverstein_kappa(lam, s, 100)
    out = rmt.silverstein_kappa(lam.to(device), s.to(device), 100)
    assert out.device.type == device
    assert torch.allclose(out.cpu(), ref, rtol=1e-10)


def test_streaming_budgets_are_device_dependent_and_independent_of_n():
    from course_lib.denoisers.ideal import auto_chunk_size
    from course_lib.denoisers.local import logit_budget

    assert logit_budget("cpu") == 2**23 and logit_budget("cuda") == 2**26
    assert auto_chunk_size(64, "cpu") == 1024 and auto_chunk_size(64, "cuda") == 2**24 // 64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA checks of the attention backend")
@pytest.mark.parametrize("sigma", [1e-2, 1.0, 1e2])
def test_attention_backend_on_cuda(data, sigma):
    """CUDA's memory-efficient kernel (float32) against the float64 CPU reference: no worse than the
    CUDA streaming path (x4, + 1e-5), for every machine; auto picks the kernel where it applies."""
    from course_lib.denoisers import attention

    train, x0, g = data
    x = x0 + sigma * torch.randn(x0.shape, generator=g, dtype=F64)
    makers = {"ideal": lambda t, b: IdealDenoiser(t, chunk_size=64, backend=b),
              "ELS": lambda t, b: EquivariantLocalDenoiser(t, 3, boundary="circular", backend=b),
              "ELS-zeros": lambda t, b: EquivariantLocalDenoiser(t, 5, boundary="zeros", backend=b),
              "LS": lambda t, b: LocalDenoiser(t, 5, boundary="zeros", backend=b)}
    xc = x.to("cuda", torch.float32)
    for k, make in makers.items():
        ref = make(train, "stream")(x, sigma)
        att = make(train.to("cuda", torch.float32), "attention")(xc, sigma).double().cpu()
        st = make(train.to("cuda", torch.float32), "stream")(xc, sigma).double().cpu()
        err_a, err_s = (att - ref).abs().max().item(), (st - ref).abs().max().item()
        assert err_a <= 4 * err_s + 1e-5, (k, sigma, err_a, err_s)
    assert attention.use_attention("auto", "cuda", torch.float32, 16, 3.0, 3.0, 1.0)
    assert not attention.use_attention("auto", "cuda", torch.float64, 16, 3.0, 3.0, 1.0)
