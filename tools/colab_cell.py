"""Write (or update) the Colab install cell at the top of chapter notebooks.

Usage: python tools/colab_cell.py chapters/*.ipynb        (idempotent; --check only reports)

The Colab launch button opens a chapter from the repository on GitHub, where `course_lib` is not
installed. The cell this script inserts before the ``parameters`` cell clones the repository (whose
URL is ``repository.url`` in _config.yml, the one place it is configured), installs `course_lib`
from it and moves into its chapters/ folder, so the notebook runs as it does locally. Outside
Colab the cell does nothing; the book removes it (tags ``remove-cell``, and tools/book_post.py).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MARKER = "# Colab: install course_lib"

TEMPLATE = '''\
# Colab: install course_lib from the course repository (this cell does nothing elsewhere).
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess

    REPO, DEST = "{url}", "/content/{name}"
    if not os.path.isdir(DEST):
        subprocess.run(["git", "clone", "--depth", "1", REPO, DEST], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", DEST], check=True)
    sys.path.insert(0, DEST)
    os.chdir(os.path.join(DEST, "chapters"))
    os.environ.setdefault("COURSE_DOWNLOAD", "1")  # fetch MNIST & co. on first use'''


def repository_url(config_path: Path = ROOT / "_config.yml") -> str:
    url = (yaml.safe_load(config_path.read_text()).get("repository") or {}).get("url", "")
    if not url.startswith("https://"):
        raise ValueError(f"{config_path}: repository.url must be an https URL, got {url!r}")
    return url.rstrip("/")


def cell_source(url: str) -> str:
    return TEMPLATE.format(url=url, name=url.rsplit("/", 1)[-1])


def make_cell(url: str) -> dict:
    return {"cell_type": "code", "execution_count": None, "id": "colab-install",
            "metadata": {"tags": ["remove-cell"]}, "outputs": [], "source": cell_source(url).splitlines(True)}


def colab_cells(nb: dict) -> list[int]:
    return [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and MARKER in "".join(c["source"])]


def apply(nb: dict, url: str) -> bool:
    """Insert the cell before the first code cell, or update it; True when ``nb`` changed."""
    cell, found = make_cell(url), colab_cells(nb)
    if found:
        old = nb["cells"][found[0]]
        if "".join(old["source"]) == "".join(cell["source"]):
            return False
        old["source"] = cell["source"]
        return True
    first_code = next((i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"), len(nb["cells"]))
    nb["cells"].insert(first_code, cell)
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="+", type=Path)
    ap.add_argument("--check", action="store_true", help="only report notebooks whose cell is missing or stale")
    args = ap.parse_args(argv)
    url, stale = repository_url(), []
    for path in args.notebooks:
        nb = json.loads(path.read_text())
        if apply(nb, url):
            stale.append(path)
            if not args.check:
                path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    verb = "need" if args.check else "updated"
    print(f"{len(stale)} notebook(s) {verb} the Colab cell" + "".join(f"\n  {p}" for p in stale))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
