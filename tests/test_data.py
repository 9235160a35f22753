"""Tests for course_lib.data (load_dataset) and its sources in course_lib.datasets."""
import gzip
import io
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from course_lib import data
from course_lib.data import DatasetNotFoundError, load_dataset
from course_lib.datasets import remote
from course_lib.datasets._common import first_per_class, original_prefix_length, write_idx


def _raw_idx(path):
    """Independent idx reader: 16-byte (images) or 8-byte (labels) header, then uint8."""
    raw = gzip.open(path, "rb").read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw[4 + 4 * ndim:], dtype=np.uint8).reshape(dims)


def _to_uint8(x):
    return np.round((x.numpy() + 1.0) * 127.5).astype(np.uint8)


@pytest.fixture(autouse=True)
def _no_download_env(monkeypatch):
    monkeypatch.delenv("COURSE_DOWNLOAD", raising=False)


# ---------------------------------------------------------------- real data, offline files
OFFLINE = [("mnist", "test", 50, (1, 28, 28)), ("mnist", "train", 50, (1, 28, 28)),
           ("mnist", "train_5k", 50, (1, 28, 28)), ("fashion_mnist", "train", 50, (1, 28, 28)),
           ("fashion_mnist", "test", 50, (1, 28, 28)), ("cifar10", "test", 50, (3, 32, 32)),
           ("cifar10", "test_5k_jpeg", 50, (3, 32, 32)), ("faces", "train", 50, (1, 64, 64))]


@pytest.mark.parametrize("name,split,n,shape", OFFLINE)
def test_shapes_dtypes_ranges(require_data, name, split, n, shape):
    require_data(name)
    x, y = load_dataset(name, split, n=n)
    assert x.shape == (n, *shape) and x.dtype == torch.float32 and x.device.type == "cpu"
    assert y.shape == (n,) and y.dtype == torch.int64
    assert x.min() >= -1.0 and x.max() <= 1.0 and x.min() < -0.9 and x.max() > 0.5
    assert len(torch.unique(x)) > 10


def test_mnist_test_first_k_matches_idx_file(require_data):
    root = require_data("mnist", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    ref = _raw_idx(root / "mnist" / "t10k-images-idx3-ubyte.gz")[:100]
    lab = _raw_idx(root / "mnist" / "t10k-labels-idx1-ubyte.gz")[:100]
    x, y = load_dataset("mnist", "test", n=100)
    np.testing.assert_array_equal(_to_uint8(x[:, 0]), ref)
    np.testing.assert_array_equal(y.numpy(), lab)
    assert torch.equal(load_dataset("mnist", "test", n=7)[0], x[:7])


def test_mnist_train_prefix_follows_train_indices(require_data):
    root = require_data("mnist", "mnist_train_5k.npz")
    z = np.load(root / "mnist" / "mnist_train_5k.npz")
    order = np.argsort(z["train_indices"])
    prefix = original_prefix_length(z["train_indices"])
    assert prefix == 4502  # the first 4502 training images hold no 501st image of any digit
    x, y, info = load_dataset("mnist", "train", n=prefix, return_info=True)
    assert torch.equal(info.indices, torch.arange(prefix))
    np.testing.assert_array_equal(_to_uint8(x[:, 0]), z["images"][order[:prefix]])
    np.testing.assert_array_equal(y.numpy()[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])  # MNIST's start
    with pytest.raises(ValueError, match=r"n=4503.*4502.*train_5k.*download=True"):
        load_dataset("mnist", "train", n=prefix + 1)
    with pytest.raises(ValueError, match="all 60000"):
        load_dataset("mnist", "train")


def test_mnist_train_5k_subset(require_data):
    require_data("mnist", "mnist_train_5k.npz")
    x, y, info = load_dataset("mnist", "train_5k", return_info=True)
    assert x.shape == (5000, 1, 28, 28)
    assert torch.equal(torch.bincount(y), torch.full((10,), 500))
    idx = info.indices.numpy()
    assert np.all(np.diff(idx) > 0)  # original order
    # it is the first 500 of each digit: no gap before any class's 500th image
    for c in range(10):
        assert idx[y.numpy() == c].max() >= 500 - 1
    x2, y2 = load_dataset("mnist", "train", n=1000)
    assert torch.equal(x[:1000], x2) and torch.equal(y[:1000], y2)


def test_mnist_classes_filter_is_first_k_of_class(require_data):
    require_data("mnist")
    x, y = load_dataset("mnist", "test")
    x7, y7 = load_dataset("mnist", "test", n=20, classes=[7])
    assert torch.equal(x7, x[y == 7][:20]) and torch.all(y7 == 7)
    x3, y3, info = load_dataset("mnist", "train", n=500, classes=3, return_info=True)
    assert torch.all(y3 == 3) and torch.all(info.indices.diff() > 0)
    xs, ys = load_dataset("mnist", "train_5k")
    assert torch.equal(x3, xs[ys == 3])
    with pytest.raises(ValueError, match="n=501"):
        load_dataset("mnist", "train", n=501, classes=3)  # beyond the first 500 per digit


def test_fashion_mnist_order_and_limits(require_data):
    root = require_data("fashion_mnist", "fashion_mnist_test.npz", "t10k-labels-idx1-ubyte.gz")
    _, y = load_dataset("fashion_mnist", "test")
    np.testing.assert_array_equal(y.numpy(), _raw_idx(root / "fashion_mnist" / "t10k-labels-idx1-ubyte.gz"))
    x, _ = load_dataset("fashion_mnist", "train", n=10000)
    assert torch.equal(load_dataset("fashion_mnist", "train_first10k")[0], x)
    with pytest.raises(ValueError, match="n=10001.*download=True"):
        load_dataset("fashion_mnist", "train", n=10001)


def test_cifar10_offline_subsets(require_data):
    require_data("cifar10", "cifar10_test_first100.npz", "cifar10_test_5k_jpeg.npz")
    x, y = load_dataset("cifar10", "test", n=100)
    assert y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert torch.equal(load_dataset("cifar10", "test_first100")[0], x)
    with pytest.raises(DatasetNotFoundError, match="n<=100.*test_5k_jpeg"):
        load_dataset("cifar10", "test", n=101)
    xj, yj, info = load_dataset("cifar10", "test_5k_jpeg", return_info=True)
    assert info.indices is None and torch.equal(torch.bincount(yj), torch.full((10,), 500))
    assert yj[:20].tolist() == list(range(10)) * 2  # class-balanced prefixes
    # the JPEG image of rank k in class c is the k-th test image of class c: compare with lossless
    rank = np.array([int((y[:i] == y[i]).sum()) for i in range(100)])
    j = rank * 10 + y.numpy()
    mse = ((xj[j] - x) ** 2).mean(dim=(1, 2, 3))
    psnr = 10 * torch.log10(4.0 / mse)
    assert psnr.median() > 25, psnr.median()


def test_faces_layout(require_data):
    require_data("faces")
    x, y = load_dataset("faces")
    assert x.shape == (400, 1, 64, 64)
    assert torch.equal(y, torch.arange(400) // 10)


# ---------------------------------------------------------------- errors
def test_missing_dataset_error_names_paths_env_and_fix(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("mnist", "test", data_dir=tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "mnist") in msg and "COURSE_DATA_DIR" in msg
    assert "download=True" in msg and remote.MNIST_URL in msg


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown dataset 'mnistt'.*fashion_mnist"):
        load_dataset("mnistt")
    with pytest.raises(ValueError, match="split 'val'.*train_5k"):
        load_dataset("mnist", "val")
    with pytest.raises(ValueError, match="n=0"):
        load_dataset("digits", n=0)
    with pytest.raises(ValueError, match="n=3 but.*only 2"):
        load_dataset("two_tone", n=3)
    with pytest.raises(TypeError, match="unexpected options"):
        load_dataset("digits", size=4)
    with pytest.raises(ValueError, match="needs n"):
        load_dataset("gaussian_field")


def test_offline_never_touches_network(tmp_path, monkeypatch):
    import pooch

    def boom(*a, **k):
        raise AssertionError("network access attempted")
    monkeypatch.setattr(pooch, "retrieve", boom)
    with pytest.raises(DatasetNotFoundError):
        load_dataset("cifar10", "train", data_dir=tmp_path)


def test_download_flag_prefers_sufficient_offline_files(require_data, monkeypatch):
    require_data("mnist", "mnist_train_5k.npz")
    import pooch

    def boom(*a, **k):
        raise AssertionError("network access attempted")
    monkeypatch.setattr(pooch, "retrieve", boom)
    x, _ = load_dataset("mnist", "train", n=100, download=True)
    assert x.shape == (100, 1, 28, 28)
    with pytest.raises(AssertionError, match="network"):
        load_dataset("mnist", "train", n=4503, download=True)


# ---------------------------------------------------------------- downloads (faked, no network)
class _FakeServer:
    """Stands in for pooch's HTTPDownloader: serves ``url -> local file``."""

    def __init__(self, files):
        self.files, self.calls = files, []

    def __call__(self, progressbar=False, **kwargs):
        server = self

        class _Downloader:
            def __call__(self, url, output_file, pooch_obj, check_only=False):
                server.calls.append(url)
                shutil.copyfile(server.files[url], output_file)
        return _Downloader()


def _sha256(path):
    import hashlib
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _fake_mnist_train(subset):
    """A fake 'full' training set consistent with the 5k subset: subset images at their original
    positions, gaps filled with random images labelled by a digit that already has 500."""
    idx, labels, images = subset["train_indices"], subset["labels"], subset["images"]
    N = int(idx.max()) + 1
    rng = np.random.default_rng(0)
    full_x = rng.integers(0, 256, size=(N, 28, 28), dtype=np.uint8)
    full_y = np.full(N, -1, dtype=np.int64)
    full_x[idx], full_y[idx] = images, labels
    counts = np.zeros(10, dtype=int)
    for i in range(N):
        if full_y[i] >= 0:
            counts[full_y[i]] += 1
        else:
            full_y[i] = int(np.flatnonzero(counts >= 500)[0])
    return full_x, full_y


def test_build_mnist_5k_subset_and_download_path(require_data, tmp_path, monkeypatch):
    root = require_data("mnist", "mnist_train_5k.npz")
    z = dict(np.load(root / "mnist" / "mnist_train_5k.npz"))
    full_x, full_y = _fake_mnist_train(z)
    built = remote.build_mnist_train_5k(full_x, full_y)
    for k in ("images", "labels", "train_indices"):
        np.testing.assert_array_equal(built[k], z[k])
    # serve the fake full set through pooch, with checksums of the fake files
    server_dir = tmp_path / "server"
    server_dir.mkdir()
    write_idx(server_dir / "train-images-idx3-ubyte.gz", full_x)
    write_idx(server_dir / "train-labels-idx1-ubyte.gz", full_y.astype(np.uint8))
    files = {}
    registry = {}
    for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        url = remote.MNIST_URL + f
        files[url] = server_dir / f
        registry[f] = (url, _sha256(server_dir / f))
    fake = _FakeServer(files)
    import pooch.downloaders
    monkeypatch.setattr(pooch.downloaders, "HTTPDownloader", fake)
    monkeypatch.setitem(remote.REMOTE, "mnist", {**remote.REMOTE["mnist"], **registry})
    dd = tmp_path / "data"
    x, y, info = load_dataset("mnist", "train", n=5000, data_dir=dd, download=True,
                              return_info=True)
    assert len(fake.calls) == 2
    np.testing.assert_array_equal(_to_uint8(x[:, 0]), full_x[:5000])
    assert (dd / "downloads" / "mnist" / "mnist_train_5k.npz").is_file()
    x5, _ = load_dataset("mnist", "train_5k", data_dir=dd)  # now served from the full files
    xo, _ = load_dataset("mnist", "train_5k")               # the offline subset
    assert torch.equal(x5, xo)


def test_download_checksum_mismatch_raises(require_data, tmp_path, monkeypatch):
    root = require_data("mnist", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    # the shared copies were re-gzipped, so they do NOT match the official .gz MD5s
    files = {remote.MNIST_URL + f: root / "mnist" / f
             for f in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
    import pooch.downloaders
    monkeypatch.setattr(pooch.downloaders, "HTTPDownloader", _FakeServer(files))
    dd = tmp_path / "data"
    with pytest.raises(ValueError, match="(?i)hash"):
        load_dataset("mnist", "test", n=5, data_dir=dd, download=True)
    assert not (dd / "downloads" / "mnist" / "t10k-images-idx3-ubyte.gz").exists()
    # with the right checksum the same bytes are accepted
    for f in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        monkeypatch.setitem(remote.REMOTE["mnist"], f, (remote.MNIST_URL + f,
                                                        _sha256(root / "mnist" / f)))
    x, _ = load_dataset("mnist", "test", n=5, data_dir=dd, download=True)
    assert torch.equal(x, load_dataset("mnist", "test", n=5)[0])


def test_faces_from_official_mat(require_data, tmp_path, monkeypatch):
    from scipy.io import savemat
    root = require_data("faces")
    x_ref, y_ref = load_dataset("faces")
    img = _to_uint8(x_ref[:, 0])
    mat = tmp_path / "olivettifaces.mat"
    savemat(mat, {"faces": img.transpose(0, 2, 1).reshape(400, 4096).T})  # (4096, 400)
    url = remote.REMOTE["faces"]["olivettifaces.mat"][0]
    import pooch.downloaders
    monkeypatch.setattr(pooch.downloaders, "HTTPDownloader", _FakeServer({url: mat}))
    monkeypatch.setitem(remote.REMOTE, "faces", {"olivettifaces.mat": (url, _sha256(mat))})
    x, y = load_dataset("faces", data_dir=tmp_path / "data", download=True)
    assert torch.equal(x, x_ref) and torch.equal(y, y_ref)
    assert root is not None


def test_cifar10_from_official_tarball(require_data, tmp_path):
    root = require_data("cifar10", "cifar10_test_first100.npz")
    z = np.load(root / "cifar10" / "cifar10_test_first100.npz")
    flat = z["images"].transpose(0, 3, 1, 2).reshape(100, 3072)  # CHW rows as in the pickles
    folder = tmp_path / "cifar10"
    folder.mkdir()
    with tarfile.open(folder / "cifar-10-python.tar.gz", "w:gz") as t:
        for i, b in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
            rows = slice(0, 100) if b == "test_batch" else slice(10 * i, 10 * i + 10)
            blob = pickle.dumps({b"data": flat[rows], b"labels": z["labels"][rows].tolist()})
            info = tarfile.TarInfo(f"cifar-10-batches-py/{b}")
            info.size = len(blob)
            t.addfile(info, io.BytesIO(blob))
    x, y = load_dataset("cifar10", "test", data_dir=tmp_path)
    assert torch.equal(x, load_dataset("cifar10", "test_first100")[0])
    xt, yt = load_dataset("cifar10", "train", data_dir=tmp_path)
    assert torch.equal(xt, x[:50]) and torch.equal(yt, y[:50])


def test_first_per_class_and_prefix_length_vs_loop():
    labels = np.random.default_rng(1).integers(0, 4, size=200)
    seen, ref = {}, []
    for i, c in enumerate(labels):
        seen[c] = seen.get(c, 0) + 1
        if seen[c] <= 7:
            ref.append(i)
    np.testing.assert_array_equal(first_per_class(labels, 7), ref)
    assert original_prefix_length(np.array([3, 0, 1, 5, 2])) == 4
    assert original_prefix_length(np.array([1, 2])) == 0


# ---------------------------------------------------------------- bundled and synthetic
def test_digits():
    from sklearn.datasets import load_digits
    x, y = load_dataset("digits")
    d = load_digits()
    assert x.shape == (1797, 1, 8, 8) and x.min() == -1 and x.max() == 1
    np.testing.assert_allclose(x[:, 0].numpy(), d.images / 8.0 - 1.0, atol=1e-6)
    assert torch.equal(y, torch.from_numpy(d.target))


def test_natural_patches_grid():
    import pywt.data
    x, y = load_dataset("natural_patches", size=16, source="camera")
    cam = pywt.data.camera() / 127.5 - 1.0
    assert x.shape == (32 * 32, 1, 16, 16) and torch.all(y == 0)
    k = 3 * 32 + 5  # crop row 3, column 5
    np.testing.assert_allclose(x[k, 0].numpy(), cam[48:64, 80:96], atol=1e-6)
    x2, _ = load_dataset("natural_patches", n=10, size=8, stride=4, downsample=2)
    assert x2.shape == (10, 1, 8, 8)
    with pytest.raises(ValueError, match="source"):
        load_dataset("natural_patches", source="lena")


def test_two_tone():
    x, y = load_dataset("two_tone", size=5, channels=3)
    assert x.shape == (2, 3, 5, 5) and torch.all(x[0] == -1) and torch.all(x[1] == 1)
    assert y.tolist() == [0, 1]


def test_gaussian_field_deterministic_and_prefix():
    a = load_dataset("gaussian_field", n=300, size=8, seed=1)[0]
    assert torch.equal(a, load_dataset("gaussian_field", n=300, size=8, seed=1)[0])
    assert torch.equal(a[:10], load_dataset("gaussian_field", n=10, size=8, seed=1)[0])
    assert not torch.allclose(a, load_dataset("gaussian_field", n=300, size=8, seed=2)[0])
    assert not torch.allclose(a, load_dataset("gaussian_field", "test", n=300, size=8, seed=1)[0])


def test_gaussian_field_covariance_helpers_agree():
    Sigma = data.gaussian_field_covariance(6, exponent=1.5, std=0.5)
    assert torch.allclose(Sigma, Sigma.T) and torch.allclose(Sigma.diagonal(), torch.tensor(0.25, dtype=torch.float64))
    lam = torch.linalg.eigvalsh(Sigma).flip(0)
    assert torch.allclose(lam, data.gaussian_field_eigenvalues(6, exponent=1.5, std=0.5), atol=1e-12)


@pytest.mark.parametrize("exponent", [1.0, 2.5])
def test_gaussian_field_empirical_spectrum_matches_power_law(exponent):
    N, size = 2000, 16
    x = load_dataset("gaussian_field", n=N, size=size, exponent=exponent, seed=0)[0][:, 0].double()
    P = data.gaussian_field_spectrum(size, exponent)
    ratio = (torch.fft.fft2(x, norm="ortho").abs() ** 2).mean(0) / P
    # with the unitary DFT, |X(k)|^2 / P(k) is exponential (chi^2_1 at real modes): mean 1, sd <= sqrt(2/N) per mode
    assert (ratio - 1).abs().max() < 5 * (2 / N) ** 0.5
    wrong = data.gaussian_field_spectrum(size, exponent + 0.3)
    assert ((torch.fft.fft2(x, norm="ortho").abs() ** 2).mean(0) / wrong - 1).abs().max() > 5 * (2 / N) ** 0.5
    # the fitted log-log slope is the declared exponent
    f = torch.fft.fftfreq(size, d=1.0 / size, dtype=torch.float64)
    k = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    m = k >= 1
    emp = (torch.fft.fft2(x, norm="ortho").abs() ** 2).mean(0)
    A = torch.stack([torch.log(k[m]), torch.ones(int(m.sum()), dtype=torch.float64)], 1)
    slope = torch.linalg.lstsq(A, torch.log(emp[m])[:, None]).solution[0, 0]
    assert abs(slope + exponent) < 0.05
    assert abs(x.var() - 1 / 9) < 0.05 / 9
