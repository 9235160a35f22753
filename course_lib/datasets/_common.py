"""Shared pieces of the dataset loaders: the data directory, errors, file readers, conversions.

The data directory is, in order: the ``data_dir`` argument, the environment variable
``COURSE_DATA_DIR``, else ``<repo>/data``. Its layout is one folder per dataset
(``mnist/``, ``fashion_mnist/``, ``cifar10/``, ``faces/``), exactly as in ``shared/data`` (see its
PROVENANCE.md). Files fetched with ``download=True`` go to ``<data dir>/downloads/<dataset>/``,
which is also searched (and git-ignored in the repository).
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..validate import CorruptFileError, corrupt_file_error

ENV_DATA_DIR = "COURSE_DATA_DIR"
ENV_DOWNLOAD = "COURSE_DOWNLOAD"
REPO_ROOT = Path(__file__).resolve().parents[2]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset (or the part of it that was asked for) is not on disk and was not downloaded."""


@dataclass
class DatasetInfo:
    """What ``load_dataset(..., return_info=True)`` returns besides the images and labels.

    ``indices`` are the images' positions in the dataset's original split (``None`` where the
    original order is unknown, e.g. the CIFAR-10 JPEG subset), ``files`` the files read.
    """
    name: str
    split: str
    indices: torch.Tensor | None
    files: list = field(default_factory=list)
    label_names: list | None = None
    notes: str = ""


def data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: ``data_dir``, else ``$COURSE_DATA_DIR``, else ``<repo>/data``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser()
    return REPO_ROOT / "data"


def download_requested(download: bool | None) -> bool:
    """``download`` if given, else whether ``$COURSE_DOWNLOAD`` is set to 1/true/yes."""
    if download is not None:
        return bool(download)
    return os.environ.get(ENV_DOWNLOAD, "").strip().lower() in ("1", "true", "yes")


def search_dirs(root: Path, name: str) -> list[Path]:
    """Folders searched for dataset ``name``: ``<root>/<name>`` then ``<root>/downloads/<name>``."""
    return [root / name, root / "downloads" / name]


def find_file(root: Path, name: str, filename: str) -> Path | None:
    for d in search_dirs(root, name):
        if (d / filename).is_file():
            return d / filename
    return None


def not_found(name: str, split: str, root: Path, wanted: list[str], urls: list[str] | None,
              extra: str = "") -> DatasetNotFoundError:
    """The error raised when a dataset is missing: where we looked and how to fix it."""
    looked = ", ".join(str(d) for d in search_dirs(root, name))
    msg = (f"dataset {name!r} (split {split!r}) not found: looked for {wanted} in {looked}. "
           f"Set the environment variable {ENV_DATA_DIR} to a directory holding '{name}/' "
           f"(e.g. COURSE_DATA_DIR=../shared/data), or pass data_dir=...")
    if urls:
        msg += (f"; or download it with load_dataset({name!r}, ..., download=True) "
                f"(or env {ENV_DOWNLOAD}=1) from {', '.join(urls)}")
    if extra:
        msg += f". {extra}"
    return DatasetNotFoundError(msg)


def read_idx(path: Path) -> np.ndarray:
    """Read an MNIST-format idx file (optionally gzipped): magic, dims (big-endian), uint8 data."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
        if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
            raise ValueError(f"not an unsigned-byte idx file (magic {raw[:4].hex()})")
        ndim = raw[3]
        dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(np.int64)
        data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
        if data.size != int(np.prod(dims)):
            raise ValueError(f"header says {tuple(dims)} but holds {data.size} bytes")
    except (OSError, EOFError, ValueError) as e:  # gzip.BadGzipFile is an OSError
        raise corrupt_file_error(path, e, FIX_DATA_FILE) from None
    return data.reshape(tuple(dims)).copy()


FIX_DATA_FILE = ("delete it and copy it again from the course's shared data folder (see data/README.md), or "
                 "fetch the official file with download=True")


def load_npz(path: Path, keys) -> dict:
    """The arrays ``keys`` of an ``.npz`` file; a corrupt, truncated or incomplete file raises a
    :class:`~course_lib.validate.CorruptFileError` naming it and the fix."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise KeyError(f"missing arrays {missing} (it has {z.files})")
            return {k: z[k] for k in keys}
    except Exception as e:  # zipfile.BadZipFile, zlib.error, EOFError, OSError, a missing key
        raise corrupt_file_error(path, e, FIX_DATA_FILE) from None


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as a gzipped idx file (used to build test fixtures and subsets)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def uint8_to_tensor(images: np.ndarray, source=None) -> torch.Tensor:
    """uint8 (N,H,W) or (N,H,W,C) -> float32 (N,C,H,W) in [-1, 1] via ``x / 127.5 - 1``.

    Integer pixels in 0..255 of another integer dtype are accepted; floating-point pixels are rejected
    (their scale, [0, 1] or [0, 255], is ambiguous), naming ``source`` (the file they came from)."""
    images = np.asarray(images)
    where = f" in {source}" if source else ""
    if images.dtype != np.uint8:
        if not np.issubdtype(images.dtype, np.integer):
            raise CorruptFileError(f"images{where} have dtype {images.dtype}; expected uint8 pixel values 0..255. "
                                   f"Convert the file: np.round(x * 255).astype(np.uint8) for pixels in [0, 1]")
        if images.size and (images.min() < 0 or images.max() > 255):
            raise CorruptFileError(f"images{where} ({images.dtype}) have values in [{images.min()}, {images.max()}]; "
                                   f"expected uint8 pixel values 0..255")
        images = images.astype(np.uint8)
    x = torch.from_numpy(np.ascontiguousarray(images))
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        x = x.permute(0, 3, 1, 2)
    else:
        raise ValueError(f"expected images of shape (N,H,W) or (N,H,W,C), got {tuple(x.shape)}")
    return (x.to(torch.float32) / 127.5 - 1.0).contiguous()


def check_n(n, available: int, name: str, split: str, hint: str = "") -> int:
    """Validate ``n`` (``None`` -> all ``available``)."""
    if n is None:
        return available
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n must be a positive int or None, got {n!r}")
    if n <= 0:
        raise ValueError(f"n must be a positive int or None, got n={n}")
    if n > available:
        msg = f"n={n} but dataset {name!r} split {split!r} has only {available} images available"
        raise ValueError(msg + (f". {hint}" if hint else ""))
    return int(n)


def check_split(name: str, split: str, valid) -> str:
    if split not in valid:
        raise ValueError(f"split {split!r} is not valid for dataset {name!r}; "
                         f"expected one of {tuple(valid)}")
    return split


def original_prefix_length(indices: np.ndarray) -> int:
    """Length of the longest prefix ``0, 1, ..., k-1`` of the original order that ``indices`` holds."""
    s = np.sort(np.asarray(indices))
    mismatch = np.nonzero(s != np.arange(len(s)))[0]
    return int(mismatch[0]) if len(mismatch) else len(s)


def first_per_class(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Original indices (ascending) of the first ``per_class`` images of each class."""
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, sorted_labels)
    rank_sorted = np.arange(len(labels)) - starts
    rank = np.empty_like(rank_sorted)
    rank[order] = rank_sorted
    return np.nonzero(rank < per_class)[0]
