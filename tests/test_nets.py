"""Reference networks: preconditioning algebra, locality of the ResNet, and a training smoke check."""
import re

import pytest
import torch

from course_lib.nets import EDMPrecond, LocalResNet, NetworkDenoiser, UNet, edm_coefficients
from course_lib.train import edm_loss


class Zero(torch.nn.Module):
    def forward(self, x, c_noise, labels=None):
        return torch.zeros_like(x)


def test_edm_coefficients_closed_form():
    s = torch.tensor([0.01, 0.5, 3.0, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = edm_coefficients(s, 0.5)
    # c_skip^2 sigma^2 + ... : the EDM conditions Var[c_in x] = 1 and c_skip^2 + c_out^2/sigma_data^2 ... :
    assert torch.allclose(c_in**2 * (s**2 + 0.25), torch.ones(4, dtype=torch.float64))
    # the target (x0 - c_skip x) / c_out has unit variance when x0 ~ (0, sigma_data^2), x = x0 + sigma n
    var_target = ((1 - c_skip) ** 2 * 0.25 + c_skip**2 * s**2) / c_out**2
    assert torch.allclose(var_target, torch.ones(4, dtype=torch.float64))
    assert torch.allclose(c_noise, s.log() / 4)


def test_precond_with_zero_network_is_c_skip_x():
    net = EDMPrecond(Zero())
    x = torch.randn(3, 1, 8, 8)
    s = torch.tensor([0.1, 1.0, 10.0])
    assert torch.allclose(net(x, s), (0.25 / (s**2 + 0.25))[:, None, None, None] * x)


def test_network_denoiser_validates_inputs():
    D = NetworkDenoiser(EDMPrecond(LocalResNet(channels=8, depth=3)))
    x = torch.randn(2, 1, 8, 8)
    assert D(x, 0.5).shape == x.shape
    with pytest.raises(ValueError, match="sigma"):
        D(x, 0.0)
    with pytest.raises(ValueError, match="dimensions"):
        D(x[0], 0.5)


def test_network_cache_key_follows_the_weights():
    """Two networks of one name and training set but different weights must not share cached
    trajectories; the key is stable for the same weights and changes when they change."""
    torch.manual_seed(0)
    a = NetworkDenoiser(EDMPrecond(LocalResNet(channels=8, depth=3)), name="n", config={"content_hash": "h"})
    b = NetworkDenoiser(EDMPrecond(LocalResNet(channels=8, depth=3)), name="n", config={"content_hash": "h"})
    assert a.cache_key == a.cache_key and a.cache_key != b.cache_key
    b.net.load_state_dict(a.net.state_dict())
    assert a.cache_key == b.cache_key
    with torch.no_grad():
        next(b.net.parameters()).add_(1e-3)
    assert a.cache_key != b.cache_key


@pytest.mark.parametrize("depth", [3, 5])
def test_resnet_receptive_field_is_2depth_plus_1(depth):
    torch.manual_seed(0)
    net = LocalResNet(channels=8, depth=depth)
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)  # zero-initialised: give it a signal
    x = torch.randn(1, 1, 21, 21, requires_grad=True)
    net(x, torch.zeros(1))[0, 0, 10, 10].backward()
    support = (x.grad[0, 0].abs() > 0).nonzero()
    r = depth  # radius: one pixel per 3x3 layer
    assert support[:, 0].min() == 10 - r and support[:, 0].max() == 10 + r
    assert support[:, 1].min() == 10 - r and support[:, 1].max() == 10 + r
    assert net.receptive_field == 2 * r + 1


def test_circular_resnet_is_translation_equivariant():
    torch.manual_seed(0)
    net = LocalResNet(channels=8, depth=4, padding="circular")
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)
    x = torch.randn(2, 1, 12, 12)
    c = torch.zeros(2)
    shifted = net(torch.roll(x, (3, -2), (2, 3)), c)
    assert torch.allclose(shifted, torch.roll(net(x, c), (3, -2), (2, 3)), atol=1e-5)


def test_unet_shapes_and_divisibility():
    net = UNet(channels=(8, 16, 16), attention=True)
    assert net(torch.randn(2, 1, 12, 12), torch.zeros(2)).shape == (2, 1, 12, 12)
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(2, 1, 10, 10), torch.zeros(2))


@pytest.mark.parametrize("channels", [(8, 16), (8, 16, 16, 24), (4, 8, 8, 8, 8)])
def test_unet_depth_is_the_number_of_widths(channels):
    net = UNet(channels=channels, attention=True)
    L, m = len(channels), 2 ** (len(channels) - 1)
    for p in net.parameters():                      # zero-initialised output layers would hide the path
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(2, 1, 2 * m, 2 * m)
    assert net(x, torch.zeros(2)).shape == x.shape
    assert sum(k.startswith("down") and k.endswith("conv1.weight") for k in net.state_dict()) == L - 1
    # the deepest level sees the whole (2m x 2m) image: a pixel's output depends on the far corner
    x.requires_grad_(True)
    net(x, torch.zeros(2))[0, 0, 0, 0].backward()
    assert x.grad[0, 0, -1, -1].abs() > 0
    with pytest.raises(ValueError, match=f"divisible by {m}"):
        net(torch.randn(1, 1, 2 * m + m // 2, 2 * m + m // 2), torch.zeros(1))
    with pytest.raises(ValueError, match="at least two"):
        UNet(channels=(8,))


def test_mixed_precision_training_runs_and_stays_close_to_float32(tmp_path):
    from course_lib.train import train

    def ema(amp):
        path = train("tiny_amp", config=TINY, out=tmp_path / f"{amp}.pt", state_dir=tmp_path / f"s{amp}",
                     progress=False, amp=amp)
        return torch.load(path, weights_only=False)["ema"]

    full, mixed = ema(False), ema(True)
    assert all(torch.isfinite(v).all() for v in mixed.values())
    assert any(not torch.equal(full[k], mixed[k]) for k in full)        # autocast was really on
    rel = max(((full[k] - mixed[k]).norm() / full[k].norm().clamp(min=1e-12)).item() for k in full)
    assert rel < 0.05, rel


def test_training_reduces_edm_loss_on_tiny_data():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    # constant images of value +-1: a local network can learn to average the noise away
    x0 = (torch.randint(0, 2, (16, 1, 1, 1), generator=gen) * 2 - 1.0).expand(16, 1, 8, 8).contiguous()
    net = EDMPrecond(LocalResNet(channels=16, depth=3))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    eval_gen = lambda: torch.Generator().manual_seed(123)  # noqa: E731
    with torch.no_grad():
        before = edm_loss(net, x0, eval_gen())
    for _ in range(60):
        loss = edm_loss(net, x0, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = edm_loss(net, x0, eval_gen())
    assert after < 0.8 * before


TINY = dict(seed=0, batch=8, lr=2e-3, warmup=2, ema_halflife_images=64, sigma_data=0.5, dataset="digits",
            split="train", n=32, channels=1, arch="resnet", arch_kwargs=dict(channels=8, depth=3), steps=6)


def test_train_resumes_exactly_and_records_its_subset(tmp_path):
    from course_lib.train import train

    full = train("tiny", config=TINY, out=tmp_path / "full.pt", state_dir=tmp_path / "s1",
                 save_every=3, progress=False)
    train("tiny", steps=3, config=TINY, out=tmp_path / "part.pt", state_dir=tmp_path / "s2",
          save_every=3, progress=False)  # interrupted after 3 steps ...
    part = train("tiny", config=TINY, out=tmp_path / "part.pt", state_dir=tmp_path / "s2",
                 save_every=3, progress=False)  # ... and resumed to 6
    a, b = torch.load(full, weights_only=False), torch.load(part, weights_only=False)
    for k in a["ema"]:
        assert torch.equal(a["ema"][k], b["ema"][k]), k
    meta = a["meta"]
    assert meta["step"] == 6 and meta["command"].endswith("--config tiny --steps 6")
    assert meta["train_subset"]["indices"] == list(range(32))
    assert len(meta["config"]["content_hash"]) == 16


def test_strided_training_subsets_are_disjoint_halves(tmp_path):
    """start/stride pick every stride-th image of the split: two halves that share no image, recorded
    in the checkpoint and recovered by creativity.network_training_images."""
    from types import SimpleNamespace

    from course_lib.creativity import network_training_images
    from course_lib.train import load_training_images, train

    halves = [dict(TINY, start=s, stride=2) for s in (0, 1)]
    (ia, la, xa), (ib, lb, xb) = [load_training_images(c) for c in halves]
    full, _, idx = load_training_images(TINY)
    assert xa.tolist() == list(range(0, 32, 2)) and xb.tolist() == list(range(1, 32, 2))
    assert torch.equal(ia, full[0::2]) and torch.equal(ib, full[1::2])
    assert not set(xa.tolist()) & set(xb.tolist())
    path = train("tiny_b", config=dict(halves[1], steps=1), out=tmp_path / "b.pt", state_dir=tmp_path / "s",
                 progress=False)
    sub = torch.load(path, weights_only=False)["meta"]["train_subset"]
    assert (sub["start"], sub["stride"], sub["indices"]) == (1, 2, list(range(1, 32, 2)))
    net = SimpleNamespace(train_subset=sub, name="tiny_b")
    assert torch.equal(network_training_images(net), ib)
    assert torch.equal(network_training_images(net, n=5), ib[:5])
    with pytest.raises(ValueError, match="not the first"):
        network_training_images(SimpleNamespace(train_subset=dict(sub, start=0), name="wrong"))
    with pytest.raises(ValueError, match="stride"):
        load_training_images(dict(TINY, stride=0))


def test_permuted_halves_are_a_partition_and_reproducible():
    from types import SimpleNamespace

    from course_lib.creativity import network_training_images
    from course_lib.train import load_training_images, subset_positions

    a, b = subset_positions(10, 0, 2, permute_seed=3), subset_positions(10, 1, 2, permute_seed=3)
    assert sorted(torch.cat([a, b]).tolist()) == list(range(10))
    assert torch.equal(a, subset_positions(10, 0, 2, permute_seed=3))
    assert not torch.equal(a, subset_positions(10, 0, 2, permute_seed=4))
    assert not torch.equal(a, torch.arange(0, 10, 2))  # actually permuted
    cfg = dict(TINY, permute_seed=0, start=1, stride=2)
    images, _, idx = load_training_images(cfg)
    full, _, _ = load_training_images(TINY)
    pos = subset_positions(32, 1, 2, permute_seed=0)
    assert torch.equal(images, full[pos]) and idx.tolist() == pos.tolist()
    net = SimpleNamespace(train_subset=dict(dataset="digits", split="train", n=32, start=1, stride=2,
                                            permute_seed=0, indices=idx.tolist()), name="perm")
    assert torch.equal(network_training_images(net), images)
    with pytest.raises(ValueError, match="start"):
        subset_positions(4, 4, 1)


def test_divergence_guard_flags_spikes_and_non_finite_losses():
    from course_lib.train import TrainingDiverged, check_divergence

    history = [0.16 + 0.01 * (i % 3) for i in range(200)]
    check_divergence(0.9, history, step=201)            # a 5x bump is ordinary batch noise
    check_divergence(1e6, history[:199], step=200)      # too little history to judge
    with pytest.raises(TrainingDiverged, match="median"):
        check_divergence(50 * 0.17 + 1, history, step=201)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(TrainingDiverged, match="step 7"):
            check_divergence(bad, [], step=7)


def test_divergent_training_stops_before_the_bad_step_and_keeps_the_last_checkpoint(tmp_path):
    """A learning rate far too large makes the loss explode; training raises instead of saving a
    broken network, and the checkpoint on disk is the last good one."""
    from course_lib.train import TrainingDiverged, train

    cfg = dict(TINY, lr=1e4, warmup=1, steps=400, diverge_factor=50.0, diverge_window=3)
    with pytest.raises(TrainingDiverged, match="Nothing from this step was applied") as err:
        train("tiny_div", config=cfg, out=tmp_path / "d.pt", state_dir=tmp_path / "s", progress=False,
              save_every=1)
    bad_step = int(re.search(r"at step (\d+)", str(err.value)).group(1))
    ck = torch.load(tmp_path / "d.pt", weights_only=False)
    assert ck["meta"]["step"] == bad_step - 1     # saved just before the bad step, never after
    assert all(torch.isfinite(v).all() for v in ck["ema"].values())


def test_grad_clip_is_applied_and_a_loose_clip_changes_nothing(tmp_path):
    from course_lib.train import train

    def ema(**kw):
        path = train("tiny_clip", config=dict(TINY, **kw), out=tmp_path / "c.pt", progress=False,
                     state_dir=tmp_path / f"s{len(kw)}{kw.get('grad_clip', '')}")
        return torch.load(path, weights_only=False)["ema"]

    plain, loose, tight = ema(), ema(grad_clip=1e9), ema(grad_clip=1e-8)
    assert all(torch.equal(plain[k], loose[k]) for k in plain)
    assert any(not torch.allclose(plain[k], tight[k]) for k in plain)


def test_padded_32x32_training_images_are_recorded_and_recovered(tmp_path, require_data):
    """The paper configs train at 32 x 32: MNIST padded with 2 background pixels on every side; the
    checkpoint records the option and the analytic machines get the same padded images back."""
    from types import SimpleNamespace

    from course_lib.configs import CONFIGS
    from course_lib.creativity import network_training_images
    from course_lib.data import load_dataset
    from course_lib.train import train

    require_data("mnist", "mnist_train_5k.npz")
    plain, _ = load_dataset("mnist", split="train_5k", n=16)
    padded, _ = load_dataset("mnist", split="train_5k", n=16, pad=2)
    assert padded.shape == (16, 1, 32, 32) and torch.equal(padded[..., 2:30, 2:30], plain)
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert (padded[..., border] == -1).all()
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="pad must be"):
            load_dataset("mnist", split="train_5k", n=4, pad=bad)
    assert all(CONFIGS[k]["options"] == {"pad": 2} for k in CONFIGS
               if k.endswith("_paper") and CONFIGS[k]["dataset"] in ("mnist", "fashion_mnist"))
    cfg = dict(TINY, dataset="mnist", split="train_5k", n=16, options=dict(pad=2),
               arch="unet", arch_kwargs=dict(channels=(8, 8, 8, 8)), steps=1)   # 4 levels: 32 / 8 = 4
    path = train("tiny_pad", config=cfg, out=tmp_path / "p.pt", state_dir=tmp_path / "s", progress=False)
    sub = torch.load(path, weights_only=False)["meta"]["train_subset"]
    assert sub["options"] == {"pad": 2}
    assert torch.equal(network_training_images(SimpleNamespace(train_subset=sub, name="tiny_pad")), padded)
