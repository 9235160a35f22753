"""MNIST, Fashion-MNIST, CIFAR-10 and Olivetti faces from the data directory (or a download).

What each offline file in ``shared/data`` can serve (``n=k`` = first k in the ORIGINAL order):

============  =====================  =====================================================
dataset       split                  offline source and what it serves
============  =====================  =====================================================
mnist         ``test``               full 10k (original idx files)
mnist         ``train``              ``mnist_train_5k.npz`` sorted by ``train_indices``:
                                     ``n <= 4502`` (the longest original prefix it holds)
mnist         ``train_5k``           all 5000 (first 500 per digit), original order
fashion_mnist ``test``               full 10k
fashion_mnist ``train``              ``n <= 10000`` (first 10k file)
fashion_mnist ``train_first10k``     the same 10k
cifar10       ``test``               ``n <= 100`` (lossless first 100)
cifar10       ``test_first100``      the lossless first 100
cifar10       ``test_5k_jpeg``       5000 JPEG-decoded (lossy) test images, 500 per class,
                                     ordered by (rank within class, class): NOT the original
                                     order, but every prefix is class-balanced
cifar10       ``train``              nothing offline: needs the official tarball
faces         ``train``              all 400 Olivetti faces (subject-major order)
============  =====================  =====================================================

With the full official files present (downloaded, or copied into ``<data dir>/<dataset>/``) every
split is served from them, with identical results for the prefixes the offline files hold.
"""
from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np

from . import remote
from ..validate import corrupt_file_error
from ._common import (FIX_DATA_FILE, DatasetNotFoundError, check_n, check_split, find_file, load_npz,
                      not_found, original_prefix_length, read_idx)

SPLITS = {
    "mnist": ("train", "train_5k", "test"),
    "fashion_mnist": ("train", "train_first10k", "test"),
    "cifar10": ("train", "test", "test_first100", "test_5k_jpeg"),
    "faces": ("train",),
}
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]


def _raw(images, labels, indices, files, label_names=None, notes=""):
    return dict(images=images, labels=np.asarray(labels, dtype=np.int64), indices=indices,
                files=[str(f) for f in files], label_names=label_names, notes=notes)


def _idx_pair(name, prefix, root, download, progress):
    """Paths of ``<prefix>-images-idx3-ubyte.gz`` and labels, fetched if allowed, else ``None``."""
    fi, fl = f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"
    pi, pl = find_file(root, name, fi), find_file(root, name, fl)
    if (pi is None or pl is None) and download:
        pi, pl = remote.fetch(name, fi, root, progress), remote.fetch(name, fl, root, progress)
    return (pi, pl) if pi is not None and pl is not None else None


def _prefix(images, labels, n, files, name, split, total, hint=""):
    n = check_n(n, total, name, split, hint)
    return _raw(images[:n], labels[:n], np.arange(n), files)


def load_mnist(split, n, root: Path, download: bool, progress: bool = False):
    check_split("mnist", split, SPLITS["mnist"])
    urls = remote.urls("mnist")
    if split == "test":
        pair = _idx_pair("mnist", "t10k", root, download, progress)
        if pair is None:
            raise not_found("mnist", split, root, ["t10k-images-idx3-ubyte.gz",
                                                   "t10k-labels-idx1-ubyte.gz"], urls)
        return _prefix(read_idx(pair[0]), read_idx(pair[1]), n, pair, "mnist", split, 10000)
    check_n(n, 10 ** 9, "mnist", split)
    full = _idx_pair("mnist", "train", root, False, progress)
    if full is None:
        try:
            return _mnist_from_subset(split, n, root, urls)
        except (DatasetNotFoundError, ValueError):
            if not download:
                raise
        remote.download_mnist_train(root, progress)
        full = _idx_pair("mnist", "train", root, False, progress)
    images, labels = read_idx(full[0]), read_idx(full[1]).astype(np.int64)
    if split == "train":
        return _prefix(images, labels, n, full, "mnist", split, len(images))
    sub = remote.build_mnist_train_5k(images, labels)
    n = check_n(n, len(sub["images"]), "mnist", split)
    idx = sub["train_indices"]
    order = np.argsort(idx, kind="stable")[:n]
    return _raw(sub["images"][order], sub["labels"][order], idx[order], full,
                notes="first 500 training images of each digit, in original order")


def _mnist_from_subset(split, n, root, urls):
    """MNIST train / train_5k from the offline ``mnist_train_5k.npz`` (see the module table)."""
    path = find_file(root, "mnist", "mnist_train_5k.npz")
    if path is None:
        raise not_found("mnist", split, root, ["train-images-idx3-ubyte.gz",
                                               "mnist_train_5k.npz"], urls)
    sub = load_npz(path, ("images", "labels", "train_indices"))
    order = np.argsort(sub["train_indices"], kind="stable")
    images, labels, idx = sub["images"][order], sub["labels"][order], sub["train_indices"][order]
    if split == "train":
        prefix = original_prefix_length(idx)
        hint = (f"The offline file {path} (the first 500 training images of each digit) "
                f"holds only the first {prefix} training images in original order; use "
                f"split='train_5k' for all 5000 of it, or download=True (from {remote.MNIST_URL}) "
                f"for the full 60000")
        if n is None:
            raise ValueError(f"n=None asks for all 60000 MNIST training images. {hint}")
        n = check_n(n, prefix, "mnist", split, hint)
        return _raw(images[:n], labels[:n], idx[:n], [path])
    n = check_n(n, len(images), "mnist", split)
    return _raw(images[:n], labels[:n], idx[:n], [path],
                notes="first 500 training images of each digit, in original order")


def load_fashion_mnist(split, n, root: Path, download: bool, progress: bool = False):
    name = "fashion_mnist"
    check_split(name, split, SPLITS[name])
    urls = remote.urls(name)
    prefix = "t10k" if split == "test" else "train"
    pair = _idx_pair(name, prefix, root, False, progress)
    npz_name = "fashion_mnist_test.npz" if split == "test" else "fashion_mnist_train_first10k.npz"
    npz = find_file(root, name, npz_name)
    offline_ok = npz is not None and (split != "train" or (n is not None and n <= 10000))
    if pair is None and not offline_ok and download:
        pair = _idx_pair(name, prefix, root, True, progress)
    if pair is not None:
        images, labels = read_idx(pair[0]), read_idx(pair[1])
        if split == "train_first10k":
            images, labels = images[:10000], labels[:10000]
        out = _prefix(images, labels, n, pair, name, split, len(images))
    elif npz is not None:
        z = load_npz(npz, ("images", "labels"))
        images, labels = z["images"], z["labels"]
        hint = (f"The offline file {npz} holds the first {len(images)} images; use "
                f"download=True (from {remote.FASHION_URL}) for all 60000")
        total = len(images)
        if split == "train" and n is None:
            raise ValueError(f"n=None asks for all 60000 Fashion-MNIST training images. {hint}; "
                             f"or pass n<={total} or split='train_first10k'")
        out = _prefix(images, labels, n, [npz], name, split, total, hint)
    else:
        raise not_found(name, split, root, [f"{prefix}-images-idx3-ubyte.gz", npz_name], urls)
    out["label_names"] = FASHION_CLASSES
    return out


def _cifar_full(root: Path, download: bool, progress: bool):
    """Official python-pickle CIFAR-10 as {"train": (x, y), "test": (x, y)}, or ``None``."""
    tar = find_file(root, "cifar10", "cifar-10-python.tar.gz")
    extracted = None
    for d in (root / "cifar10", root / "downloads" / "cifar10"):
        if (d / "cifar-10-batches-py" / "test_batch").is_file():
            extracted = d / "cifar-10-batches-py"
    if tar is None and extracted is None:
        if not download:
            return None
        tar = remote.fetch("cifar10", "cifar-10-python.tar.gz", root, progress)

    def batches(names):
        out = {}
        if extracted is not None:
            for b in names:
                with open(extracted / b, "rb") as f:
                    out[b] = pickle.load(f, encoding="bytes")
        else:
            with tarfile.open(tar, "r:gz") as t:
                for b in names:
                    out[b] = pickle.load(t.extractfile(f"cifar-10-batches-py/{b}"),
                                         encoding="bytes")
        return out

    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    try:
        d = batches(names)
    except Exception as e:  # truncated tarball, corrupt pickle, missing member
        raise corrupt_file_error(extracted if extracted is not None else tar, e, FIX_DATA_FILE) from None

    def stack(keys):
        x = np.concatenate([d[k][b"data"] for k in keys]).reshape(-1, 3, 32, 32)
        y = np.concatenate([np.asarray(d[k][b"labels"]) for k in keys])
        return x.transpose(0, 2, 3, 1), y.astype(np.int64)

    return {"train": stack(names[:5]), "test": stack(names[5:]),
            "files": [str(extracted if extracted is not None else tar)]}


def load_cifar10(split, n, root: Path, download: bool, progress: bool = False):
    name = "cifar10"
    check_split(name, split, SPLITS[name])
    urls = remote.urls(name)
    first100 = find_file(root, name, "cifar10_test_first100.npz")
    if split == "test_5k_jpeg":
        path = find_file(root, name, "cifar10_test_5k_jpeg.npz")
        if path is None:
            raise not_found(name, split, root, ["cifar10_test_5k_jpeg.npz"], None,
                            "This lossy JPEG subset is not downloadable; use split='test' "
                            "with download=True for the lossless official test set")
        z = load_npz(path, ("images", "labels", "class_index"))
        images, labels, rank = z["images"], z["labels"], z["class_index"]
        order = np.lexsort((labels, rank))
        n = check_n(n, len(images), name, split)
        out = _raw(images[order][:n], labels[order][:n], None, [path],
                   notes="JPEG-decoded (lossy); ordered by (rank within class, class), "
                         "not the original order")
        out["label_names"] = CIFAR10_CLASSES
        return out
    # test / test_first100 served losslessly from the first-100 file when it suffices
    if split in ("test", "test_first100") and first100 is not None and (
            split == "test_first100" or (n is not None and n <= 100)):
        z = load_npz(first100, ("images", "labels"))
        images, labels = z["images"], z["labels"]
        out = _prefix(images, labels, n, [first100], name, split, 100)
        out["label_names"] = CIFAR10_CLASSES
        return out
    full = _cifar_full(root, download, progress)
    if full is None:
        extra = ""
        if split == "test" and first100 is not None:
            extra = (f"Offline, split 'test' serves only n<=100 (from {first100}); "
                     f"split='test_5k_jpeg' has 5000 lossy JPEG-decoded test images")
        raise not_found(name, split, root, ["cifar-10-python.tar.gz"], urls, extra)
    key = "train" if split == "train" else "test"
    images, labels = full[key]
    total = 100 if split == "test_first100" else len(images)
    out = _prefix(images, labels, n, full["files"], name, split, total)
    out["label_names"] = CIFAR10_CLASSES
    return out


def load_faces(split, n, root: Path, download: bool, progress: bool = False):
    name = "faces"
    check_split(name, split, SPLITS[name])
    path = find_file(root, name, "olivetti_faces_64x64.npz")
    if path is not None:
        z = load_npz(path, ("images", "labels"))
        return _prefix(z["images"], z["labels"], n, [path], name, split, len(z["images"]))
    mat = find_file(root, name, "olivettifaces.mat")
    if mat is None and download:
        mat = remote.fetch(name, "olivettifaces.mat", root, progress)
    if mat is None:
        raise not_found(name, split, root, ["olivetti_faces_64x64.npz", "olivettifaces.mat"],
                        remote.urls(name))
    from scipy.io import loadmat
    try:
        faces = np.asarray(loadmat(mat)["faces"])
    except Exception as e:
        raise corrupt_file_error(mat, e, FIX_DATA_FILE) from None
    if faces.min() < 0 or faces.max() > 255 or not np.all(faces == np.round(faces)):
        raise ValueError(f"{mat}: expected integer pixel values in 0..255")
    images = faces.T.reshape(400, 64, 64).transpose(0, 2, 1).astype(np.uint8)
    return _prefix(images, np.arange(400) // 10, n, [mat], name, split, 400)


__all__ = ["SPLITS", "load_mnist", "load_fashion_mnist", "load_cifar10", "load_faces"]
