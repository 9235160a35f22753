"""Theory vs network orchestration (Chapter 5): calibrate_network, theory_vs_network, committed calibrations."""
import json

import pytest
import torch

from course_lib.calibrate import PatchSizeSchedule
from course_lib.creativity import (CALIBRATION_SEED0, PAPER_TABLE2, NetworkCalibration, calibrate_network,
                                   calibration_path, load_calibration, machine_factory, network_training_images,
                                   table_vs_paper, theory_machines, theory_vs_network)
from course_lib.denoisers import EquivariantLocalDenoiser, IdealDenoiser, LocalDenoiser
from course_lib.schedules import karras_sigmas

COMMITTED = ("mnist_resnet_book", "mnist_unet_book", "fashion_mnist_resnet_book", "fashion_mnist_unet_book")


def tiny_train(seed=0, N=6, H=8):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(N, 1, H, H, generator=g, dtype=torch.float64) * 2 - 1


def hidden(sigma):
    return 7 if sigma > 2.0 else 5 if sigma > 0.3 else 3


@pytest.mark.parametrize("kind,cls", [("ELS", EquivariantLocalDenoiser), ("LS", LocalDenoiser)])
def test_calibrate_network_recovers_a_known_schedule(kind, cls):
    Y = tiny_train()
    ref = cls(Y, hidden, boundary="zeros")  # a "network" whose schedule we know
    cal = calibrate_network(ref, None, range(3), [3, 5, 7, 9], kinds=[kind], n_steps=8, sigma_min=0.05,
                            sigma_max=10.0, train_images=Y, dtype=torch.float64)
    sig = karras_sigmas(8, 0.05, 10.0).double()[:-1].tolist()
    assert cal[kind].sigmas == pytest.approx(sig)
    assert cal[kind].patch_sizes == [hidden(s) for s in sig]
    assert torch.equal(cal.per_seed[kind], torch.tensor([hidden(s) for s in sig]).unsqueeze(1).expand(-1, 3))
    assert cal.metadata["n_train"] == 6 and cal.metadata["seeds"] == [0, 1, 2]
    assert cal.metadata["call"].startswith("course_lib.creativity.calibrate_network(")


def test_calibration_of_a_wrong_machine_is_not_the_hidden_schedule():
    """The check can fail: an ELS reference calibrated with LS machines does not recover ELS's schedule
    exactly, and its best cosine stays below 1."""
    Y = tiny_train(1)
    ref = EquivariantLocalDenoiser(Y, hidden, boundary="zeros")
    cal = calibrate_network(ref, None, range(3), [3, 5, 7, 9], kinds=["LS"], n_steps=8, sigma_min=0.05,
                            sigma_max=10.0, train_images=Y, dtype=torch.float64)
    scores = cal.results["LS"].scores  # (K, n_candidates, B)
    assert float(scores.max(1).values[-3:].min()) < 0.999


def test_json_round_trip(tmp_path):
    Y = tiny_train()
    cal = calibrate_network(EquivariantLocalDenoiser(Y, hidden, "zeros"), 4, range(2), [3, 5], n_steps=3,
                            train_images=Y, dtype=torch.float64)
    path = cal.save(tmp_path / "cal.json")
    back = NetworkCalibration.load(path)
    assert back.schedules == cal.schedules and back.metadata == json.loads(json.dumps(cal.metadata))
    assert all(torch.equal(back.per_seed[k], cal.per_seed[k]) for k in cal.schedules)
    assert PatchSizeSchedule.load(path) == cal["ELS"]  # the top level is the ELS schedule
    assert load_calibration(path).schedules == cal.schedules


def test_theory_vs_network_of_a_machine_against_itself():
    Y = tiny_train(2)
    sched = PatchSizeSchedule([5.0, 0.5, 0.1], [7, 5, 3])
    net = EquivariantLocalDenoiser(Y, sched, boundary="zeros")
    machines = theory_machines(Y, {"ELS": sched, "LS": sched})
    assert isinstance(machines["IS"], IdealDenoiser) and isinstance(machines["LS"], LocalDenoiser)
    sig = karras_sigmas(6, 0.05, 5.0).double()
    comp = theory_vs_network(net, machines, range(4), sig, (1, 8, 8), dtype=torch.float64, cache=False,
                             reference_name="fake_net")
    assert torch.allclose(comp.r2["ELS"], torch.ones(4, dtype=torch.float64), atol=1e-12)
    assert float(comp.r2["IS"].max()) < 1 - 1e-6  # a different machine is not a perfect match
    assert comp.beats("ELS", "IS") == 1.0
    table = table_vs_paper({"fake_net": comp}, paper={"fake_net": {"dataset": "D", "arch": "A", "padding": "zeros",
                                                                   "ELS": 0.5, "LS": 0.4, "IS": 0.3, "ELS>IS": 0.9}})
    assert "| `fake_net` | this course | 4 | 1.00 [1.00, 1.00]" in table and "| 0.50 | 0.40 | 0.30 | 0.90 |" in table


def test_bad_inputs():
    Y = tiny_train()
    with pytest.raises(ValueError, match="kinds"):
        calibrate_network(IdealDenoiser(Y), None, range(2), [3], kinds=["XLS"], train_images=Y)
    with pytest.raises(ValueError, match="kind"):
        machine_factory("IS", Y)
    with pytest.raises(ValueError, match="n_train=10"):
        calibrate_network(IdealDenoiser(Y), 10, range(2), [3], train_images=Y)
    with pytest.raises(ValueError, match="train_subset"):
        network_training_images(IdealDenoiser(Y))
    with pytest.raises(ValueError, match="machines"):
        theory_vs_network(IdealDenoiser(Y), {}, range(2), [1.0, 0.0], (1, 8, 8))
    with pytest.raises(FileNotFoundError, match="committed calibrations"):
        load_calibration("no_such_network")


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_calibrations(name):
    cal = load_calibration(name)
    meta = cal.metadata
    assert set(cal.schedules) == {"ELS", "LS"} and cal.network == name
    ckpt = json.loads((calibration_path(name).parents[1] / "checkpoints" / f"{name}.json").read_text())
    assert meta["network_config_hash"] == ckpt["config"]["content_hash"]
    assert meta["metric"] == "cosine" and meta["target"] == "eps" and meta["boundary"] == "zeros"
    assert {k: meta["train_subset"][k] for k in ("dataset", "split")} == \
        {k: ckpt["train_subset"][k] for k in ("dataset", "split")}
    assert meta["command"].startswith(f"python -m course_lib.creativity {name}")
    assert min(meta["seeds"]) >= CALIBRATION_SEED0  # disjoint from the chapter's comparison seeds 0, 1, ...
    for k, s in cal.schedules.items():
        assert min(s.sigmas) <= meta["sigma_min"] * 1.001 and max(s.sigmas) >= meta["sigma_max"] * 0.999
        assert len(s.sigmas) == meta["n_steps"]
        assert all(P % 2 == 1 and P in meta["candidates"] for P in s.patch_sizes)
        assert cal.per_seed[k].shape == (meta["n_steps"], len(meta["seeds"]))
        # the schedule is the (lower) median of the seeds' choices, step by step
        assert s.patch_sizes == cal.per_seed[k].median(dim=1).values.tolist()
    assert name in PAPER_TABLE2


def test_recalibration_of_a_committed_network_at_tiny_settings(require_data):
    require_data("mnist", "mnist_train_5k.npz")
    cal = calibrate_network("mnist_resnet_book", 8, range(CALIBRATION_SEED0, CALIBRATION_SEED0 + 2), [3, 5, 9],
                            n_steps=4)
    for s in cal.schedules.values():
        assert len(s.patch_sizes) == 4 and all(P in (3, 5, 9) for P in s.patch_sizes)
    assert cal.metadata["train_subset"] == {"dataset": "mnist", "split": "train_5k", "n_train": 8,
                                            "which": "first n_train images in original order"}
    net = type("FakeNet", (), {"name": "fake", "train_subset": {"dataset": "mnist", "split": "train_5k",
                                                                "indices": [5, 4, 3, 2, 1]}})()
    with pytest.raises(ValueError, match="not the first 3 training images"):
        network_training_images(net, 3)


def test_table2_script_runs_at_tiny_settings(tmp_path, require_data):
    """tools/table2.py (the full-dictionary Table 2, meant for a GPU) at CPU-sized settings."""
    import importlib.util
    from pathlib import Path

    require_data("mnist", "mnist_train_5k.npz")
    path = Path(__file__).resolve().parents[1] / "tools" / "table2.py"
    spec = importlib.util.spec_from_file_location("table2", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "t.md"
    mod.main(["--nets", "mnist_resnet_book", "--n-train", "8", "--seeds", "2", "--steps", "3",
              "--device", "cpu", "--out", str(out)])
    rows = out.read_text().splitlines()
    assert rows[2].startswith("| `mnist_resnet_book` | this course | 2 |")
    assert rows[3].startswith("| MNIST ResNet (zeros) | paper, Table 2 | 100 | 0.94")
