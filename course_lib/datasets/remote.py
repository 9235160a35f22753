"""Checksummed downloads of the official dataset files with ``pooch``.

Only called when ``download=True`` or ``$COURSE_DOWNLOAD=1``. Every file is verified against the
checksum of the official release (the MD5s torchvision and scikit-learn publish) before use, and
stored under ``<data dir>/downloads/<dataset>/``. After fetching the full MNIST training set the
downloader also writes ``mnist_train_5k.npz`` (the first 500 training images of each digit, with
their original ``train_indices``), byte-compatible with the offline file in ``shared/data``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._common import first_per_class, read_idx

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

# dataset -> filename -> (url, known_hash in pooch's "algo:hex" form)
REMOTE = {
    "mnist": {
        "train-images-idx3-ubyte.gz": (MNIST_URL + "train-images-idx3-ubyte.gz",
                                       "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        "train-labels-idx1-ubyte.gz": (MNIST_URL + "train-labels-idx1-ubyte.gz",
                                       "md5:d53e105ee54ea40749a09fcbcd1e9432"),
        "t10k-images-idx3-ubyte.gz": (MNIST_URL + "t10k-images-idx3-ubyte.gz",
                                      "md5:9fb629c4189551a2d022fa330f9573f3"),
        "t10k-labels-idx1-ubyte.gz": (MNIST_URL + "t10k-labels-idx1-ubyte.gz",
                                      "md5:ec29112dd5afa0611ce80d1b7f02629c"),
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": (FASHION_URL + "train-images-idx3-ubyte.gz",
                                       "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        "train-labels-idx1-ubyte.gz": (FASHION_URL + "train-labels-idx1-ubyte.gz",
                                       "md5:25c81989df183df01b3e8a0aad5dffbe"),
        "t10k-images-idx3-ubyte.gz": (FASHION_URL + "t10k-images-idx3-ubyte.gz",
                                      "md5:bef4ecab320f06d8554ea6380940ec79"),
        "t10k-labels-idx1-ubyte.gz": (FASHION_URL + "t10k-labels-idx1-ubyte.gz",
                                      "md5:bb300cfdad3c16e7a12a480ee83cd310"),
    },
    "cifar10": {
        "cifar-10-python.tar.gz": ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                                   "md5:c58f30108f718f92721af3b95e74349a"),
    },
    "faces": {
        "olivettifaces.mat": ("https://ndownloader.figshare.com/files/5976027",
                              "sha256:b612fb967f2dc77c9c62d3e1266e0c73d5fca46a4b8906c18e454d41af987794"),
    },
}


def urls(name: str) -> list[str]:
    return [u for u, _ in REMOTE.get(name, {}).values()]


def fetch(name: str, filename: str, root: Path, progress: bool = False) -> Path:
    """Download ``filename`` of dataset ``name`` into ``<root>/downloads/<name>/``, verify it.

    A checksum mismatch raises ``ValueError`` (from pooch) and leaves no file behind.
    """
    import pooch

    url, known_hash = REMOTE[name][filename]
    target = root / "downloads" / name
    created = [d for d in (root, root / "downloads", target) if not d.exists()]
    target.mkdir(parents=True, exist_ok=True)
    try:
        path = pooch.retrieve(url=url, known_hash=known_hash, fname=filename, path=str(target),
                              progressbar=progress)
    except ValueError:  # checksum mismatch (pooch removes the file)
        _remove_empty(created)
        raise
    except OSError as e:  # no network, DNS failure, HTTP error, timeout (requests' errors are OSErrors)
        _remove_empty(created)
        raise ConnectionError(
            f"could not download {filename!r} of dataset {name!r} from {url} into {target}: "
            f"{type(e).__name__}: {e}. Offline, copy the dataset's files into {root / name} (or {target}) by "
            f"hand, or set COURSE_DATA_DIR to a folder that holds '{name}/' (e.g. the course's shared data), "
            f"and call without download=True / COURSE_DOWNLOAD=1") from None
    except BaseException:
        _remove_empty(created)
        raise
    return Path(path)


def _remove_empty(folders) -> None:
    """Remove the folders this download created (deepest first) if they are still empty."""
    for d in reversed(folders):
        try:
            d.rmdir()
        except OSError:
            pass


def build_mnist_train_5k(images: np.ndarray, labels: np.ndarray, per_class: int = 500) -> dict:
    """The offline MNIST subset from the full training set: first ``per_class`` images per digit.

    Same layout as ``shared/data/mnist/mnist_train_5k.npz``: sorted by class, original order
    within a class, with ``train_indices`` the positions in the original 60k training set.
    """
    idx = first_per_class(labels, per_class)
    idx = idx[np.argsort(labels[idx], kind="stable")]
    return {"images": images[idx], "labels": labels[idx].astype(np.int64),
            "train_indices": idx.astype(np.int64)}


def download_mnist_train(root: Path, progress: bool = False) -> Path:
    """Fetch the full MNIST training set and write the 5k subset next to it; return its folder."""
    img = fetch("mnist", "train-images-idx3-ubyte.gz", root, progress)
    lab = fetch("mnist", "train-labels-idx1-ubyte.gz", root, progress)
    subset = img.parent / "mnist_train_5k.npz"
    if not subset.exists():
        np.savez_compressed(subset, **build_mnist_train_5k(read_idx(img), read_idx(lab).astype(np.int64)))
    return img.parent
