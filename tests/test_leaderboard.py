"""The leaderboard (course_lib.leaderboard): the ci-scale command end to end (part of `make test`), the
table's shape and columns, one pair against course_lib.compare run directly, resumability, bad input."""
import csv

import pytest
import torch

from course_lib import leaderboard as lb


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    from conftest import _require_data
    _require_data("mnist", "mnist_train_5k.npz")
    out = tmp_path_factory.mktemp("lb") / "leaderboard.csv"
    assert lb.main(["--scale", "ci", "--out", str(out)]) == 0
    return out


def test_ci_table_shape_and_columns(ci_run):
    with open(ci_run) as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == lb.COLUMNS
        rows = list(reader)
    nets = lb.SETTINGS["ci"]["networks"]
    assert len(rows) == len(lb.MACHINES) * len(nets)
    assert {(r["machine"], r["network"]) for r in rows} == {(m, n) for m in lb.MACHINES for n in nets}
    parsed = lb.read_csv(ci_run)
    for r in parsed:
        assert r["n_seeds"] == lb.SETTINGS["ci"]["n_seeds"] and r["dataset"] == "mnist"
        assert r["ci_low"] <= r["median_r2"] <= r["ci_high"] and r["median_r2"] <= 1.0
        assert r["median_mse"] >= 0 and r["seconds_per_call"] > 0
    md = ci_run.with_suffix(".md").read_text()
    assert "python -m course_lib.leaderboard --scale ci" in md and md.count("\n| ") == len(rows) + 2  # header, rule, rows
    assert ci_run.with_suffix(".png").stat().st_size > 1000


def test_pair_equals_compare_run_directly(ci_run):
    """The leaderboard's r^2 of (wiener, mnist_resnet_book) equals course_lib.compare run by hand."""
    from course_lib.compare import compare
    from course_lib.creativity import network_training_images
    from course_lib.denoisers import GaussianDenoiser
    from course_lib.nets import load_pretrained
    from course_lib.schedules import karras_sigmas

    s = lb.SETTINGS["ci"]
    net = load_pretrained("mnist_resnet_book")
    X = network_training_images(net, s["n_train"])
    sig = karras_sigmas(s["n_steps"], 0.01, 80.0, 7.0)
    c = compare({"w": GaussianDenoiser.from_data(X, correction=0)}, net, sig, list(range(s["n_seeds"])),
                (1, 28, 28), "euler", cache=False)
    med, lo, hi = c.median("w")
    row = next(r for r in lb.read_csv(ci_run) if r["machine"] == "wiener" and r["network"] == "mnist_resnet_book")
    assert row["median_r2"] == pytest.approx(float(med), abs=1e-5)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((float(lo), float(hi)), abs=1e-5)
    assert row["median_mse"] == pytest.approx(float(c.median("w", "mse")[0]), rel=1e-4)


def test_resumes_from_cache_without_recomputing(ci_run, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a cached pair was recomputed")
    monkeypatch.setattr(lb, "run_pair", boom)
    rows = lb.run("ci", out=ci_run, progress=False)
    assert len(rows) == len(lb.MACHINES) * len(lb.SETTINGS["ci"]["networks"])
    ideal = [r for r in rows if r["machine"] == "ideal"]
    assert all(r["beats_ideal"] == 0.5 for r in ideal)
    assert all(len(r["step_r2"]) == lb.SETTINGS["ci"]["n_steps"] for r in rows)


def test_machines_are_denoisers_and_bad_input():
    X = torch.rand(12, 1, 8, 8) * 2 - 1
    x = torch.randn(2, 1, 8, 8)
    for m in ("ideal", "smoothed", "wiener", "gmm", "wavelet-independent"):
        out = lb.build_machine(m, X)(x, torch.tensor(1.0))
        assert out.shape == x.shape and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="machine must be one of"):
        lb.build_machine("nope", X)
    with pytest.raises(ValueError, match="needs a calibration"):
        lb.build_machine("ELS", X)
    with pytest.raises(ValueError, match="unknown machines"):
        lb.run("ci", machines=["nope"], progress=False)
    with pytest.raises(ValueError, match="unknown networks"):
        lb.run("ci", networks=["nope"], progress=False)


def test_load_joins_the_step_curves(ci_run):
    rows = lb.load(ci_run)
    assert all(len(r["step_r2"]) == lb.SETTINGS["ci"]["n_steps"] and "beats_ideal" in r for r in rows)
    assert [(r["machine"], r["network"]) for r in rows] == [(r["machine"], r["network"]) for r in lb.read_csv(ci_run)]


def test_summary_markdown_counts_wins_and_medians():
    from course_lib.leaderboard import summary_markdown, to_markdown
    rows = [dict(machine=m, network=n, median_r2=v, ci_low=v, ci_high=v, median_mse=0.1, seconds_per_call=0.01,
                 beats_ideal=0.5)
            for m, n, v in [("ideal", "a", 0.1), ("ideal", "b", 0.3), ("els", "a", 0.9), ("els", "b", 0.2),
                            ("wiener", "a", 0.5), ("wiener", "b", 0.6)]]
    lines = summary_markdown(rows).splitlines()
    assert "2 networks" in lines[0] and len(lines) == 2 + 3
    assert lines[2] == "| ideal | 0.100 | 0.100, 0.300 | 0 of 2 |"          # torch median of 2 = the lower
    assert lines[3] == "| els | 0.200 | 0.200, 0.900 | 1 of 2 |"
    assert lines[4] == "| wiener | 0.500 | 0.500, 0.600 | 1 of 2 |"
    ideal_row = next(line for line in to_markdown(rows).splitlines() if line.startswith("| ideal | a"))
    assert "| - |" in ideal_row                                               # the ideal does not "beat" itself
