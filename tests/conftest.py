"""Shared test fixtures.

``require_data(name, *files)`` returns the data directory when ``<data dir>/<name>/<file>`` exists
for every ``file`` (any file at all when none are named); otherwise it SKIPS the test with the
reason, or FAILS it when the environment variable ``COURSE_REQUIRE_DATA=1`` (set by CI).
"""
import os

import pytest


def _require_data(name, *files):
    from course_lib.data import DATASETS_OFFLINE, data_dir

    root = data_dir()
    if name in DATASETS_OFFLINE:  # bundled or synthetic: nothing to require
        return root
    folders = [root / name, root / "downloads" / name]
    folder = folders[0]
    missing = [f for f in files if not any((d / f).is_file() for d in folders)]
    if not files and not any(d.is_dir() and any(d.iterdir()) for d in folders):
        missing = ["<any file>"]
    if missing:
        reason = (f"dataset {name!r}: {missing} not found in {folder} "
                  f"(set COURSE_DATA_DIR, e.g. COURSE_DATA_DIR=../shared/data)")
        if os.environ.get("COURSE_REQUIRE_DATA", "").strip() in ("1", "true", "yes"):
            pytest.fail(f"COURSE_REQUIRE_DATA=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return root


@pytest.fixture
def require_data():
    """``root = require_data("mnist", "mnist_train_5k.npz")``: skip (or fail in CI) when missing."""
    return _require_data
