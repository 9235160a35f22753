# Analytic Diffusion: the two commands are `make book` and `make test` (see README.md).
# Both create the virtual environment in .venv when it is missing.
VENV        ?= .venv
PY          := $(VENV)/bin/python
SCALE       ?= book
# The PyTorch build to install. CPU default; for a GPU see README ("Paper scale on a GPU").
TORCH_SPEC  ?= torch==2.13.0
MATHJAX     ?= mathjax@3.2.2
STAMP       := $(VENV)/.installed
HTML        := _build/_build/html

.PHONY: book test env pytest chapters html clean publish

book: $(STAMP)                      ## execute every chapter at SCALE (default book) and build the HTML book
	$(PY) tools/build_book.py --scale $(SCALE)

# One torch thread per process: the suite is many small ops, where 2 threads on 2 cores only spin.
# The browser test (tests/test_browser.py) opens the freshly built pages in headless Chromium.
test: export OMP_NUM_THREADS ?= 1
test: $(STAMP)                      ## the whole test suite: unit tests, chapters at CI scale, book build with -W, browser
	$(PY) -m pytest -q
	$(PY) tools/build_book.py --scale ci
	COURSE_BROWSER_TEST=1 $(PY) -m pytest -q -m browser tests/test_browser.py

env: $(STAMP)

# MathJax comes from its npm package and is copied into the book, so pages typeset offline.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	@command -v npm >/dev/null || { echo "npm is needed to vendor MathJax into the book: apt-get install npm (or conda install nodejs)"; exit 1; }
	npm install --prefix $(VENV)/share/npm --no-audit --no-fund --silent $(MATHJAX)
	touch $(STAMP)

# Publish a local build to the gh-pages branch (GitHub Pages); CI does this with .github/workflows/book.yml.
publish: $(STAMP)                   ## push _build/_build/html to the gh-pages branch
	test -f $(HTML)/index.html || $(MAKE) book
	$(VENV)/bin/ghp-import --no-jekyll --push --force $(HTML)

clean:
	rm -rf _build
