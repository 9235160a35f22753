"""The attention backend equals the streaming path (the reference) for the ideal, LS and ELS machines."""
import pytest
import torch

from course_lib.denoisers import EquivariantLocalDenoiser, IdealDenoiser, LocalDenoiser
from course_lib.denoisers import attention

SIGMAS = [1e-2, 1e-1, 1.0, 10.0, 1e2]


def _data(dtype=torch.float64, N=6, C=2, H=6, W=5, B=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    Y = torch.rand(N, C, H, W, generator=g, dtype=torch.float64) * 2 - 1
    x = Y[:B] + 0.2 * torch.randn(B, C, H, W, generator=g, dtype=torch.float64)
    return Y.to(dtype), x.to(dtype)


MACHINES = {
    "ideal": lambda Y, b: IdealDenoiser(Y, chunk_size=2, backend=b),
    "LS": lambda Y, b: LocalDenoiser(Y, 3, chunk_size=2, backend=b),
    "ELS": lambda Y, b: EquivariantLocalDenoiser(Y, 3, boundary="circular", chunk_size=2, backend=b),
    "ELS-zeros": lambda Y, b: EquivariantLocalDenoiser(Y, 5, boundary="zeros", chunk_size=2, backend=b),
}


@pytest.fixture
def kernel_calls(monkeypatch):
    """Count the fused kernel calls (and the key lengths they saw)."""
    calls, real = [], attention.attention_lse

    def counting(q, k, v):
        calls.append(k.shape[-2])
        return real(q, k, v)
    monkeypatch.setattr(attention, "attention_lse", counting)
    monkeypatch.setattr(attention, "_REJECTED", set())
    return calls


@pytest.mark.parametrize("name", MACHINES)
def test_attention_equals_streaming_in_float64(name, kernel_calls):
    Y, x = _data()
    for sigma in SIGMAS:
        att = MACHINES[name](Y, "attention")(x, sigma)
        ref = MACHINES[name](Y, "stream")(x, sigma)
        torch.testing.assert_close(att, ref, rtol=1e-10, atol=1e-12)
    assert len(kernel_calls) >= 3 * len(SIGMAS)  # the kernel ran, over several chunks (N = 6, 2 per chunk)


@pytest.mark.parametrize("name", MACHINES)
def test_attention_float32_is_within_float32_rounding(name):
    """float32 against the float64 result: no worse than the float32 streaming path (x4, + 1e-6)."""
    Y, x = _data()
    for sigma in SIGMAS:
        ref = MACHINES[name](Y, "stream")(x, sigma)
        att = MACHINES[name](Y.float(), "attention")(x.float(), sigma).double()
        stream = MACHINES[name](Y.float(), "stream")(x.float(), sigma).double()
        err_att, err_stream = (att - ref).abs().max().item(), (stream - ref).abs().max().item()
        assert err_att <= 4 * err_stream + 1e-6, (name, sigma, err_att, err_stream)


def test_auto_uses_the_kernel_then_streams_where_logits_lose_precision(kernel_calls):
    Y, x = _data(torch.float32)
    els = EquivariantLocalDenoiser(Y, 3, boundary="zeros")
    els(x, 1.0)
    assert kernel_calls, "auto did not use the kernel at sigma = 1"
    kernel_calls.clear()
    # rounding floor u (|q| K + K^2/2) / sigma^2 with K = sqrt(18), |q| ~ 4: 1e-2 needs sigma >~ 7e-3
    out = els(x, 1e-3)
    assert not kernel_calls, "auto used the kernel where float32 logits lose precision"
    torch.testing.assert_close(out, EquivariantLocalDenoiser(Y, 3, boundary="zeros", backend="stream")(x, 1e-3))
    # float64 keeps the kernel down to tiny sigma
    EquivariantLocalDenoiser(Y.double(), 3, boundary="zeros")(x.double(), 1e-3)
    assert kernel_calls
    assert attention.logit_floor(torch.float32, 4.0, 18**0.5, 1e-3) > attention.LOGIT_TOL
    assert attention.logit_floor(torch.float32, 4.0, 18**0.5, 1e-1) < attention.LOGIT_TOL


def test_a_rejected_kernel_falls_back_to_streaming(monkeypatch):
    monkeypatch.setattr(attention, "_REJECTED", set())

    def reject(*args, **kwargs):
        raise RuntimeError("head dim not supported")
    monkeypatch.setattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", reject)
    Y, x = _data()
    for name, make in MACHINES.items():
        torch.testing.assert_close(make(Y, "auto")(x, 0.5), make(Y, "stream")(x, 0.5), rtol=1e-12, atol=0)
    # head dims: ideal 60 + 1 -> 64, LS / ELS with P = 3 and C = 2: 19 -> 24, ELS P = 5: 51 -> 56
    assert {("cpu", torch.float64, E) for E in (64, 24, 56)} <= attention._REJECTED
    with pytest.raises(ValueError, match="rejected head dimension"):
        MACHINES["ELS"](Y, "attention")(x, 0.5)


def test_backend_choice_and_errors():
    assert attention.head_dim(9) == 16 and attention.head_dim(49) == 56 and attention.head_dim(784) == 792
    assert not attention.use_attention("auto", "cpu", torch.float16, 16, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="no fused attention kernel"):
        attention.use_attention("attention", "cpu", torch.float16, 16, 1.0, 1.0, 1.0)
    assert not attention.use_attention("stream", "cpu", torch.float32, 16, 1.0, 1.0, 1.0)
    # head dims above the device's auto ceiling stream (CPU: the ideal denoiser at d = 784), unless forced
    assert attention.use_attention("auto", "cpu", torch.float32, 88, 1.0, 1.0, 1.0)       # ELS P = 9
    assert not attention.use_attention("auto", "cpu", torch.float32, 128, 1.0, 1.0, 1.0)  # P = 11 streams
    assert not attention.use_attention("auto", "cpu", torch.float32, 792, 1.0, 1.0, 1.0)
    assert attention.use_attention("attention", "cpu", torch.float32, 792, 1.0, 1.0, 1.0)
    ls = attention.LS_AUTO_MAX_HEAD_DIM  # LS's box filters win on a CPU from P = 7 (E = 56)
    assert attention.use_attention("auto", "cpu", torch.float32, 16, 1.0, 1.0, 1.0, ls)
    assert not attention.use_attention("auto", "cpu", torch.float32, 56, 1.0, 1.0, 1.0, ls)
    Y, _ = _data()
    for make in (lambda b: IdealDenoiser(Y, backend=b), lambda b: LocalDenoiser(Y, 3, backend=b),
                 lambda b: EquivariantLocalDenoiser(Y, 3, backend=b)):
        with pytest.raises(ValueError, match="backend must be one of"):
            make("flash")


def test_key_memory_is_bounded_independently_of_n(kernel_calls, monkeypatch):
    """Without chunk_size, keys per kernel call follow the key budget, not N (results unchanged)."""
    monkeypatch.setattr(attention, "KEY_BUDGET_CPU", 3 * 30 * 24 * 4)  # 4 images of 30 patches, E = 24
    for N in (8, 32):
        Y, x = _data(N=N)
        kernel_calls.clear()
        out = EquivariantLocalDenoiser(Y, 3)(x, 0.7)
        assert max(kernel_calls) == 4 * 30 and len(kernel_calls) == N // 4
        torch.testing.assert_close(out, EquivariantLocalDenoiser(Y, 3, backend="stream")(x, 0.7))
