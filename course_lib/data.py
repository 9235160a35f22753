"""``load_dataset``: every dataset of the course behind one call (Chapter 0, "Data").

``load_dataset(name, split="train", n=None)`` returns ``(images, labels)``: images float32 in
[-1, 1] of shape (N, C, H, W) on the CPU, labels int64 of shape (N,). ``n=k`` is always the first k
images of the split in the dataset's ORIGINAL order, so that a result is the same whether it came
from the small offline files or from the full official download.

Real datasets are read from the data directory (``data_dir=``, else ``$COURSE_DATA_DIR``, else
``<repo>/data``; layout as in ``shared/data``, see ``data/README.md``), or downloaded with checksum
verification when ``download=True`` or ``$COURSE_DOWNLOAD=1``. What each offline file can serve is
tabulated in :mod:`course_lib.datasets.real`.
"""
from __future__ import annotations

import numpy as np
import torch

from .datasets import real, synthetic
from .datasets._common import (DatasetInfo, DatasetNotFoundError, check_n, check_split,
                               data_dir, download_requested, read_idx, uint8_to_tensor)
from .datasets.real import CIFAR10_CLASSES, FASHION_CLASSES, SPLITS
from .validate import as_int
from .datasets.synthetic import (PATCH_SOURCES, gaussian_field_covariance,
                                 gaussian_field_eigenvalues, gaussian_field_spectrum)

DATASETS = ("mnist", "fashion_mnist", "cifar10", "faces", "digits", "natural_patches",
            "gaussian_field", "two_tone")
DATASETS_OFFLINE = ("digits", "natural_patches", "gaussian_field", "two_tone")  # no data dir
_REAL = {"mnist": real.load_mnist, "fashion_mnist": real.load_fashion_mnist,
         "cifar10": real.load_cifar10, "faces": real.load_faces}
# With ``classes=...``, a split whose full version is not on disk is filtered from a subset that
# holds, for every class, a prefix of that class in original order.
_CLASS_COMPLETE = {("mnist", "train"): "train_5k", ("fashion_mnist", "train"): "train_first10k",
                   ("cifar10", "test"): "test_first100"}
_OPTIONS = {"natural_patches": {"size", "source", "stride", "downsample"},
            "gaussian_field": {"size", "exponent", "std", "seed"},
            "two_tone": {"size", "channels"}, "mnist": {"pad"}, "fashion_mnist": {"pad"}}
_resolve_dir = data_dir


def load_dataset(name: str, split: str = "train", n: int | None = None, *, data_dir=None,
                 download: bool | None = None, classes=None, return_info: bool = False,
                 progress: bool = False, **options):
    """Load dataset ``name`` -> ``(images, labels)`` (and a :class:`DatasetInfo` if asked).

    Parameters
    ----------
    name : one of :data:`DATASETS`.
    split : ``"train"`` / ``"test"`` or a named subset (``"train_5k"`` for the MNIST first 500 per
        digit, ``"train_first10k"``, ``"test_first100"``, ``"test_5k_jpeg"``); see ``SPLITS``.
    n : the first ``n`` images in original order (``None``: all). ``gaussian_field`` needs it.
    data_dir, download : where to look; whether to fetch missing files (default: ``$COURSE_DOWNLOAD``).
    classes : keep only these labels (then ``n`` counts the kept images, still in original order).
    return_info : also return a :class:`DatasetInfo` with the original ``indices`` and files read.
    options : ``size``, ``exponent``, ``std``, ``seed`` (gaussian_field); ``size``, ``source``,
        ``stride``, ``downsample`` (natural_patches); ``size``, ``channels`` (two_tone); ``pad``
        (mnist, fashion_mnist: that many background pixels, value -1, on every side; ``pad=2`` gives
        the 32 x 32 images of the paper-scale configs).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {DATASETS}")
    extra = set(options) - _OPTIONS.get(name, set())
    if extra:
        raise TypeError(f"load_dataset({name!r}) got unexpected options {sorted(extra)}; "
                        f"valid: {sorted(_OPTIONS.get(name, set()))}")
    classes = _check_classes(classes, name)
    n_load = None if classes is not None else n
    label_names, files, notes = None, [], ""

    if name in _REAL:
        root = _resolve_dir(data_dir)
        dl = download_requested(download)
        loader = _REAL[name]
        try:
            raw = loader(split, n_load, root, dl, progress)
        except (ValueError, DatasetNotFoundError):
            fallback = _CLASS_COMPLETE.get((name, split))
            if classes is None or fallback is None:
                raise
            raw = loader(fallback, None, root, dl, progress)
            raw["notes"] = f"classes filtered from split {fallback!r}"
        images = uint8_to_tensor(raw["images"], ", ".join(map(str, raw["files"])))
        if options.get("pad"):
            images = _pad_background(images, options["pad"])
        labels = torch.from_numpy(raw["labels"])
        idx = None if raw["indices"] is None else torch.as_tensor(raw["indices"], dtype=torch.int64)
        label_names, files, notes = raw["label_names"], raw["files"], raw["notes"]
    else:
        valid = ("train", "test") if name == "gaussian_field" else ("train",)
        check_split(name, split, valid)
        if name == "gaussian_field":
            if n is None:
                raise ValueError("gaussian_field needs n (the number of fields to draw), got None")
            images = synthetic.gaussian_field(n, split=split, **options)
            labels = torch.zeros(len(images), dtype=torch.int64)
        elif name == "two_tone":
            images = synthetic.two_tone(**options)
            labels = torch.arange(2)
            label_names = ["black", "white"]
        elif name == "digits":
            images, labels = synthetic.digits()
        else:
            images, labels = synthetic.natural_patches(**options)
            label_names = list(PATCH_SOURCES)
        idx = torch.arange(len(images))
        if classes is None and name != "gaussian_field":
            k = check_n(n, len(images), name, split)
            images, labels, idx = images[:k], labels[:k], idx[:k]

    if classes is not None:
        classes = _resolve_class_names(classes, name, label_names)
        present = sorted(set(labels.unique().tolist()))
        absent = [c for c in classes if c not in present]
        if absent:
            span = f"{present[0]}..{present[-1]}" if present == list(range(present[0], present[-1] + 1)) else present
            raise ValueError(f"classes {absent} do not occur in dataset {name!r} split {split!r}: its labels are "
                             f"{span}" + (f" ({label_names})" if label_names else ""))
        keep = torch.isin(labels, torch.tensor(classes, dtype=torch.int64))
        images, labels = images[keep], labels[keep]
        idx = None if idx is None else idx[keep]
        k = check_n(n, len(images), name, f"{split} (classes={classes})")
        images, labels, idx = images[:k], labels[:k], None if idx is None else idx[:k]
    if not return_info:
        return images, labels
    return images, labels, DatasetInfo(name=name, split=split, indices=idx, files=files,
                                       label_names=label_names, notes=notes)


def _check_classes(classes, name):
    """``classes`` as a list of ints and/or label-name strings (None stays None)."""
    if classes is None:
        return None
    if isinstance(classes, str) or np.ndim(classes) == 0:
        items = [classes]
    elif isinstance(classes, (list, tuple)):
        items = list(classes)
    else:  # an array or tensor of labels
        items = list(np.asarray(classes).ravel())
    out = []
    for c in items:
        if isinstance(c, (str, np.str_)):
            out.append(str(c))
        else:
            out.append(as_int(c, f"classes of load_dataset({name!r}) (labels, or label names such as 'cat')"))
    if not out:
        raise ValueError("classes is empty; pass None for every class or a list of labels")
    return out


def _resolve_class_names(classes, name, label_names):
    out = []
    for c in classes:
        if isinstance(c, str):
            if not label_names or c not in label_names:
                known = f"label names {label_names}" if label_names else "no label names; pass integer labels"
                raise ValueError(f"classes={c!r}: dataset {name!r} has {known}")
            c = label_names.index(c)
        out.append(c)
    return out


def _pad_background(images: torch.Tensor, pad) -> torch.Tensor:
    if not isinstance(pad, int) or isinstance(pad, bool) or pad < 0:
        raise ValueError(f"pad must be an int >= 0 (pixels per side), got {pad!r}")
    return torch.nn.functional.pad(images, (pad,) * 4, value=-1.0)


__all__ = ["load_dataset", "DATASETS", "DATASETS_OFFLINE", "SPLITS", "DatasetInfo", "DatasetNotFoundError",
           "data_dir", "read_idx", "gaussian_field_spectrum", "gaussian_field_covariance",
           "gaussian_field_eigenvalues", "CIFAR10_CLASSES", "FASHION_CLASSES", "PATCH_SOURCES"]
