"""Reference networks: preconditioning algebra, locality of the ResNet, and a training smoke check."""
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
