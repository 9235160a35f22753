"""Hardening (issue 17), files and resources: corrupt data / checkpoint / cache files are named with the fix,
a corrupt cache entry is recomputed, downloads fail clearly offline, checkpoints cannot run code, and
synthetic datasets do not allocate without bound."""
import gzip
import shutil

import numpy as np
import pytest
import torch

from course_lib.data import load_dataset
from course_lib.validate import CorruptFileError


def _mnist_dir(tmp_path, require_data):
    src = require_data("mnist", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    d = tmp_path / "mnist"
    d.mkdir()
    for f in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(src / "mnist" / f, d / f)
    return d


def test_truncated_gz_names_the_file_and_the_fix(tmp_path, require_data):
    d = _mnist_dir(tmp_path, require_data)
    p = d / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:5000])
    with pytest.raises(CorruptFileError, match=r"t10k-images-idx3-ubyte\.gz.*(delete|replace)"):
        load_dataset("mnist", "test", n=5, data_dir=tmp_path)


def test_corrupt_npz_names_the_file(tmp_path):
    (tmp_path / "faces").mkdir()
    (tmp_path / "faces" / "olivetti_faces_64x64.npz").write_bytes(b"PK\x03\x04 not really a zip file")
    with pytest.raises(CorruptFileError, match="olivetti_faces_64x64.npz"):
        load_dataset("faces", n=3, data_dir=tmp_path)


def test_float_pixels_in_a_hand_made_file_are_rejected(tmp_path):
    (tmp_path / "faces").mkdir()
    np.savez(tmp_path / "faces" / "olivetti_faces_64x64.npz", images=np.random.rand(4, 64, 64).astype(np.float32),
             labels=np.arange(4))
    with pytest.raises(ValueError, match=r"olivetti_faces_64x64.npz.*float32.*uint8"):
        load_dataset("faces", n=3, data_dir=tmp_path)


def test_classes_are_validated():
    with pytest.raises(ValueError, match=r"classes \[11\].*0\.\.9"):
        load_dataset("digits", classes=[11])
    with pytest.raises(ValueError, match="classes"):
        load_dataset("digits", classes="cat")
    x, y = load_dataset("two_tone", classes="white")
    assert y.tolist() == [1] and x.shape[0] == 1
    x, y = load_dataset("digits", classes=np.int64(3), n=4)
    assert y.tolist() == [3] * 4


def test_offline_download_says_what_to_do_and_leaves_no_empty_folders(tmp_path, monkeypatch):
    import pooch

    def no_network(*a, **k):
        raise ConnectionError("Failed to resolve 'ndownloader.figshare.com'")

    monkeypatch.setattr(pooch, "retrieve", no_network)
    with pytest.raises(ConnectionError) as e:
        load_dataset("faces", n=3, data_dir=tmp_path, download=True)
    msg = str(e.value)
    for part in ("'faces'", "https://ndownloader.figshare.com/files/5976027", str(tmp_path), "COURSE_DATA_DIR"):
        assert part in msg, (part, msg)
    assert not (tmp_path / "downloads").exists()


def test_gaussian_field_does_not_allocate_without_bound():
    with pytest.raises(MemoryError, match=r"n=1000000000.*GiB"):
        load_dataset("gaussian_field", n=10**9)
    assert load_dataset("gaussian_field", n=300)[0].shape == (300, 1, 32, 32)


# ------------------------------------------------------------------ caches
def test_corrupt_stats_cache_is_discarded_and_recomputed(tmp_path):
    from course_lib.stats import dataset_stats

    Y = torch.randn(20, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    ref = dataset_stats(Y, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.pt"))
    assert len(files) == 1
    files[0].write_bytes(files[0].read_bytes()[:100])  # truncated
    with pytest.warns(UserWarning, match="corrupt.*recomput"):
        again = dataset_stats(Y, cache_dir=tmp_path)
    assert torch.equal(again.Sigma, ref.Sigma)
    assert torch.equal(dataset_stats(Y, cache_dir=tmp_path).Sigma, ref.Sigma)  # rewritten, readable


def test_interrupted_cache_write_leaves_nothing_behind(tmp_path, monkeypatch):
    from course_lib import stats

    def interrupted(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        stats.dataset_stats(torch.randn(5, 1, 2, 2), cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ checkpoints
def test_committed_checkpoints_load_with_weights_only(monkeypatch):
    from course_lib.nets import load_pretrained

    seen = []
    real_load = torch.load

    def spy(*a, **k):
        seen.append(k.get("weights_only"))
        return real_load(*a, **k)

    monkeypatch.setattr(torch, "load", spy)
    D = load_pretrained("mnist_resnet_book")
    assert seen == [True] and len(D.train_subset["indices"]) == 5000


class _Evil:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        import os
        return (os.makedirs, (self.path,))


def test_checkpoints_cannot_run_code_and_bad_ones_are_named(tmp_path, monkeypatch):
    from course_lib.nets import pretrained

    monkeypatch.setattr(pretrained, "CKPT_DIR", tmp_path)
    torch.save({"ema": {}, "meta": _Evil(tmp_path / "pwned")}, tmp_path / "evil.pt")
    with pytest.raises(CorruptFileError, match=r"evil\.pt"):
        pretrained.load_pretrained("evil")
    assert not (tmp_path / "pwned").exists()
    (tmp_path / "trunc.pt").write_bytes(b"\x80\x02garbage")
    with pytest.raises(CorruptFileError, match=r"trunc\.pt.*python -m course_lib.train"):
        pretrained.load_pretrained("trunc")
    torch.save({"ema": {}}, tmp_path / "nometa.pt")
    with pytest.raises(CorruptFileError, match=r"nometa\.pt.*'meta'"):
        pretrained.load_pretrained("nometa")


def test_gzip_helper_roundtrip(tmp_path):
    from course_lib.datasets._common import read_idx, write_idx

    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", a)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), a)
    with gzip.open(tmp_path / "b.gz", "wb") as f:
        f.write(b"\x00\x00\x08\x03" + b"\x00" * 3)
    with pytest.raises(CorruptFileError, match="b.gz"):
        read_idx(tmp_path / "b.gz")


def test_training_state_resumes_with_weights_only(tmp_path):
    """train.py resumes from its state file with torch.load(weights_only=True): what it saves must load so."""
    from course_lib.configs import CONFIGS
    from course_lib.train import build_network

    cfg = dict(CONFIGS["mnist_resnet_book"], arch_kwargs=dict(channels=4, depth=3, padding="zeros"))
    net = build_network(cfg)
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(2, 1, 28, 28), torch.ones(2)).sum().backward()
    opt.step()
    gen = torch.Generator().manual_seed(0)
    torch.save({"net": net.state_dict(), "ema": net.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
                "step": 1, "losses": [(1, 0.5)], "cfg": cfg}, tmp_path / "s.pt")
    st = torch.load(tmp_path / "s.pt", weights_only=True)
    torch.optim.Adam(build_network(cfg).parameters()).load_state_dict(st["opt"])
    assert st["cfg"]["arch_kwargs"] == cfg["arch_kwargs"]


def test_corrupt_calibration_file_is_named(tmp_path):
    from course_lib.calibrate import PatchSizeSchedule

    (tmp_path / "sched.json").write_text('{"sigmas": [0.1, 1.0], "patch_si')  # truncated
    with pytest.raises(CorruptFileError, match=r"sched\.json"):
        PatchSizeSchedule.load(tmp_path / "sched.json")
