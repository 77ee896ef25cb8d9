# The two commands a newcomer needs: `make demo` and `make test`. Each sets up .venv on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.ordinalclip-installed
# torch/torchvision are pinned together so that pip never pairs a torchvision with a torch it was not built for.
TORCH  ?= torch==2.14.1 torchvision==0.29.1

.PHONY: test test-fast demo lint bench clean venv browser wheel-check docs

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[test,demo,report,onnx,serve,slurm,ray,docs]"
	touch $(STAMP)

## a real headless browser for the tests of what a person sees: Debian's chromium (Playwright comes with `.[test]`)
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "warning: could not install chromium (not root?): browser tests will be skipped outside CI"

# modules whose docstring examples are executed (doctests)
DOCTESTS := src/ordinalclip/losses.py src/ordinalclip/penalties.py src/ordinalclip/metrics.py src/ordinalclip/fileio.py src/ordinalclip/config/run.py

## run the whole test suite (slow tests included), as CI does: lint, format, types, doctests, the wheel check, tests
test: $(STAMP) browser
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks
	$(PY) -m mypy
	$(PY) -m pytest -q -p no:cacheprovider --doctest-modules $(DOCTESTS)
	$(MAKE) wheel-check
	$(MAKE) docs
	$(PY) -m pytest -n 2 -q tests

## build the wheel, install it into a fresh venv outside the tree (reusing this venv's torch) and run the commands
wheel-check: $(STAMP)
	.ci/wheel_check.sh $(PY)

## the documentation site, built offline into site/ (--strict: a broken link or a missing API object fails it)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

## the fast tests only
test-fast: $(STAMP)
	$(PY) -m pytest -n 2 -q -m "not slow" tests

## the built-in default job: offline demo on real pretrained towers and real photos
demo: $(STAMP)
	$(VENV)/bin/ordinalclip demo

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/run_all.py --json benchmarks/results/latest.json

clean:
	rm -rf $(VENV) runs site .pytest_cache .ruff_cache
