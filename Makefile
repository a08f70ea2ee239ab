# The two commands of the README, each doing its own set-up on a fresh clone:
#   make demo   runs the main job (an end-to-end demo in a temporary home)
#   make test   runs every test and check (.ci/run runs exactly this)
# `make bench` runs the benchmarks against their baselines (release build) into README.md.

VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
export VIRTUAL_ENV := $(VENV)
export PATH := $(VENV)/bin:$(PATH)

.PHONY: demo test bench build lint

$(VENV)/.ready: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "maturin>=1.9.4,<2"
	touch $@

# Release build, installed editable into .venv (the demo needs no extra; the tests and
# benchmarks take the test and torch extras). A stale extension in python/ would shadow the
# fresh one, so it is removed first.
EXTRAS ?=
build: $(VENV)/.ready
	rm -f python/adapter_registry/_core*.so
	maturin develop --release $(if $(EXTRAS),--extras $(EXTRAS))

# The demo takes the ui extra (starlette, uvicorn, jinja2: light) for its dashboard step; never torch.
demo: EXTRAS = ui
demo: build
	$(VENV)/bin/adapter-registry demo

# vllm: the plugin's tests run against the real vllm, which pins its own torch, so it is
# resolved together with the torch extra (README, "Serving by name": what it adds to CI).
lint: EXTRAS = test,torch,ui,vllm
lint: build
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	$(PY) -m ruff check python tests benches
	$(PY) -m ruff format --check python tests benches
	$(PY) -m mypy
	$(PY) -m mypy.stubtest adapter_registry._core

# The bench smoke run: each bench module's setup and correctness asserts once, at a tiny size,
# untimed (benches/conftest.py). Left out: bench_query_mlflow, bench_search and
# bench_small_store (MLflow is the bench group's, not installed here), bench_interrupt (its
# answer depends on timing: the signal must land mid-copy).
SMOKE_BENCHES := bench_hash bench_import bench_cli_start bench_load bench_query bench_pg_query \
	bench_swarm bench_pg_store bench_dashboard bench_bundle bench_resolve bench_store \
	bench_verify bench_verify_small bench_verify_one

# The dashboard's browser test drives Debian's Chromium through Debian's chromedriver, named
# explicitly (Selenium Manager would download a driver): installed here where it is missing.
/usr/bin/chromedriver:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver

# tests/test_relocation.py moves a registry home with rsync -a too: Debian's, where it is missing.
/usr/bin/rsync:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends rsync

test: lint /usr/bin/chromedriver /usr/bin/rsync
	cargo test
	$(PY) -m pytest
	ADAPTER_REGISTRY_BENCH_SMOKE=1 $(PY) -m pytest -q --benchmark-disable \
		$(SMOKE_BENCHES:%=benches/%.py)

# Every comparison, contenders interleaved; prints the table, writes benches/results.json and
# the README's table. (The same files also run under pytest-benchmark: pytest benches.)
bench: EXTRAS = test,torch,ui,vllm
bench: build
	$(PY) -m pip install -q --group bench
	$(PY) benches/run.py --readme README.md
