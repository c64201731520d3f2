# Two commands on a fresh clone: `make demo` (set up, then run the main job on the embedded
# default) and `make test` (set up, then run the tests). Both create .venv on first use.
# On our CPU-only machines the install is constrained to the local CPU torch wheel
# (constraints.txt), so nothing downloads CUDA packages; the package itself needs only torch>=2.4.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The real datasets: $METALEARN_DATA, else ../shared/data beside the clone when it is there.
DATA_ROOT ?= $(or $(METALEARN_DATA),$(if $(wildcard ../shared/data/omniglot),$(abspath ../shared/data)))
export METALEARN_CACHE ?= $(CURDIR)/.cache
PYTEST_ARGS ?=

.PHONY: install demo test lint bench-sampling clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# Meta-train on the embedded default (preset demo: MAML on sinusoids, 8,000 steps of 10 tasks),
# or, when Omniglot is under the data root (preset demo-omniglot: ProtoNet, 600 steps of 20-way
# 1-shot), then evaluate on 600 fixed test tasks (mean ± 95% CI). Measured once each on a 2-core
# machine shared with other jobs (load average 5-7): demo 6.5 min (392 s), demo-omniglot 6.5 min
# (392 s), with `time make demo`; `metalearn train` prints the figure when it starts (DEMO_MINUTES in metalearn/cli/main.py).
demo: install
	$(PY) -m metalearn.cli train --out demo_out/run --overwrite \
	  $(if $(DATA_ROOT),--preset demo-omniglot --data-root $(DATA_ROOT),--preset demo)
	$(PY) -m metalearn.cli eval demo_out/run

lint: install
	$(PY) -m ruff check metalearn tests benchmarks

test: lint
	$(if $(DATA_ROOT),METALEARN_TEST_DATA=$(DATA_ROOT)) $(PY) -m pytest --doctest-modules metalearn tests $(PYTEST_ARGS)

bench-sampling: install
	$(PY) benchmarks/sampling.py --data-root $(or $(DATA_ROOT),$(error set METALEARN_DATA to the folder holding omniglot/))

clean:
	rm -rf $(VENV) .cache demo_out
