"""Plot and widget helpers: grid layout against a hand-built reference, headless drawing."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course_lib import plot, widgets  # noqa: E402
from course_lib.denoisers import FunctionDenoiser  # noqa: E402
from course_lib.sampling import sample  # noqa: E402
from course_lib.schedules import karras_sigmas  # noqa: E402


def test_make_grid_layout():
    torch.manual_seed(0)
    imgs = torch.stack([torch.full((1, 2, 3), v) for v in (-1.0, 0.0, 1.0)])  # values -> 0, .5, 1
    g = plot.make_grid(imgs, nrow=2, pad=1, pad_value=0.25)
    assert g.shape == (2 * 3 + 1, 2 * 4 + 1, 1)
    assert g[1:3, 1:4].eq(0.0).all() and g[1:3, 5:8].eq(0.5).all() and g[4:6, 1:4].eq(1.0).all()
    assert g[4:6, 5:8].eq(0.25).all() and g[0].eq(0.25).all()  # empty slot and padding
    rgb = plot.make_grid(torch.rand(5, 3, 4, 4) * 4 - 2, nrow=8)
    assert rgb.shape == (6, 5 * 5 + 1, 3) and rgb.min() >= 0 and rgb.max() <= 1  # clipped
    with pytest.raises(ValueError, match="C = 1 or 3"):
        plot.make_grid(torch.zeros(2, 2, 4, 4))


def test_image_grid_trajectory_compare_draw():
    torch.manual_seed(0)
    ax = plot.image_grid(torch.rand(6, 1, 8, 8), nrow=3, title="t")
    assert ax.get_title() == "t" and len(ax.images) == 1
    plot.image_grid(torch.rand(4, 3, 8, 8) * 2 - 1, ax=ax)
    D = FunctionDenoiser(lambda x, s: 0.5 * x)
    x_T = torch.randn(3, 1, 6, 6, generator=torch.Generator().manual_seed(0)) * 10
    traj = sample(D, x_T, karras_sigmas(8, 0.01, 10.0), "heun", return_trajectory=True)
    fig = plot.plot_trajectory(traj, steps=4, which="both", n_images=2)
    assert len(fig.axes) == 8
    fig = plot.plot_trajectory(traj, steps=[0, -1], which="x", vp_view=True)
    assert len(fig.axes) == 2 and fig.axes[1].get_title() == "σ=0"

    def unsaturated(f):  # fraction of panel pixels strictly inside (0, 1) (padding is exactly 1)
        a = torch.as_tensor(f.axes[0].images[0].get_array().data)
        return float(((a > 0) & (a < 1)).float().mean())

    raw = plot.plot_trajectory(traj, steps=[0, -1], which="x")
    # sigma = 10: the clipped VE state is almost all saturated, the VP view mostly is not
    assert unsaturated(raw) < 0.15 and unsaturated(fig) > 0.25
    with pytest.raises(ValueError, match="which"):
        plot.plot_trajectory(traj, which="y")
    with pytest.raises(ValueError, match="out of range"):
        plot.plot_trajectory(traj, steps=[20])
    fig = plot.compare_grid({"theory": torch.rand(5, 1, 6, 6), "network": torch.rand(5, 1, 6, 6)}, n_images=5)
    assert len(fig.axes) == 2 and fig.axes[0].get_ylabel() == "theory"
    plt.close("all")


def test_widgets_static_then_interactive(monkeypatch):
    import ipywidgets as w

    calls = []

    def draw(sigma, k, name):
        calls.append((sigma, k, name))
        plt.figure()
        plt.plot([0, 1], [0, sigma])

    s = widgets.sigma_slider(2.0, min=0.01, max=80.0)
    assert s.value == pytest.approx(2.0) and isinstance(s, w.FloatLogSlider)
    assert widgets.widget_defaults(sigma=s, k=(0, 10), name=["a", "b"]) == {"sigma": pytest.approx(2.0), "k": 5,
                                                                           "name": "a"}
    monkeypatch.setenv("COURSE_NO_WIDGETS", "1")
    assert widgets.interact_with_static(draw, sigma=s, k=(0, 10), name=["a", "b"]) is None
    assert calls == [(pytest.approx(2.0), 5, "a")]
    monkeypatch.delenv("COURSE_NO_WIDGETS")
    ui = widgets.interact_with_static(draw, sigma=s, k=w.fixed(3), name=["a", "b"])
    assert ui is not None and calls[1] == (pytest.approx(2.0), 3, "a")
    assert len(calls) == 3  # the interactive widget drew once at its defaults too
    with pytest.raises(ValueError, match="min <= value"):
        widgets.sigma_slider(100.0, max=80.0)
    plt.close("all")


def test_interact_is_headless_safe(monkeypatch, capsys):
    from course_lib import widgets

    calls = []
    monkeypatch.setenv("COURSE_NO_WIDGETS", "1")
    assert widgets.interact(lambda s: calls.append(s), s=(0.0, 1.0)) is None
    assert calls == [] and "run this notebook" in capsys.readouterr().out
    monkeypatch.setenv("COURSE_NO_WIDGETS", "0")
    ui = widgets.interact(lambda s: calls.append(s), s=(0.0, 1.0))
    assert ui is not None and calls == [0.5]  # ipywidgets calls fn once at the default value
