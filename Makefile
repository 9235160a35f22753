# Analytic Diffusion: the two commands are `make book` and `make test` (see README.md).
# Both create the virtual environment in .venv when it is missing.
VENV        ?= .venv
PY          := $(VENV)/bin/python
SCALE       ?= book
# The PyTorch build to install. CPU default; for a GPU see README ("Paper scale on a GPU").
TORCH_SPEC  ?= torch==2.13.0
STAMP       := $(VENV)/.installed

.PHONY: book test env pytest chapters html clean

book: $(STAMP)                      ## execute every chapter at SCALE (default book) and build the HTML book
	$(PY) tools/build_book.py --scale $(SCALE)

# One torch thread per process: the suite is many small ops, where 2 threads on 2 cores only spin.
test: export OMP_NUM_THREADS ?= 1
test: $(STAMP)                      ## the whole test suite: unit tests, chapters at CI scale, book build with -W
	$(PY) -m pytest -q
	$(PY) tools/build_book.py --scale ci

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

clean:
	rm -rf _build
