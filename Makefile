# PicoDNS: every command a developer or CI needs. `make test` and `make run` set everything up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
COMPILED := $(VENV)/.compiled
PURE := build/pure
LISTEN ?= 127.0.0.1:1053
UPSTREAMS ?=
FUZZ_SECONDS ?= 60
PYTEST_ARGS ?=

.PHONY: build run demo test test-pure test-race fuzz lint bench bench-wire clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 'setuptools>=68' wheel
	PICODNS_PURE=1 $(PY) -m pip install -q -e '.[test,lint]'
	touch $(STAMP)

# The serving core compiled by mypyc into src/ (see setup.py), rebuilt whenever a source changes
# so that tests never run stale compiled code. About a minute.
$(COMPILED): $(STAMP) setup.py $(wildcard src/picodns/*.py)
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	touch $(COMPILED)

# The same source without the compiled modules, for `make test-pure` and the fuzzer (whose
# coverage guidance sees only interpreted code).
$(PURE): $(wildcard src/picodns/*.py)
	rm -rf $(PURE) && mkdir -p $(PURE)
	cp -r src/picodns $(PURE)/ && rm -f $(PURE)/picodns/*.so

bin/dnsd: $(COMPILED)
	mkdir -p bin
	printf '#!/bin/sh\nexec "%s/$(VENV)/bin/picodns" "$$@"\n' "$(CURDIR)" > bin/dnsd
	chmod +x bin/dnsd

build: bin/dnsd

run: build
	bin/dnsd -listen $(LISTEN) $(if $(UPSTREAMS),-upstreams $(UPSTREAMS))

demo: build
	$(PY) demo/demo.py

# Both builds: the source as written, then the compiled core that `pip install` gives users.
test: test-pure build
	PICODNS_EXPECT_BUILD=compiled $(PY) -m pytest -q $(PYTEST_ARGS)

test-pure: $(STAMP) $(PURE)
	PICODNS_EXPECT_BUILD=pure PYTHONPATH=$(CURDIR)/$(PURE) $(PY) -m pytest -q $(PYTEST_ARGS)

# Python has no race detector: run the suite in development mode with asyncio debug on, so
# unawaited coroutines, slow callbacks, unclosed resources and thread misuse fail loudly.
test-race: build
	PICODNS_EXPECT_BUILD=compiled PYTHONASYNCIODEBUG=1 $(PY) -X dev -W error::RuntimeWarning -m pytest -q $(PYTEST_ARGS)

fuzz: build $(PURE)
	PICODNS_PURE=1 $(PY) -m pip install -q -e '.[fuzz]' || echo "atheris did not install: running the plain mutation loop"
	mkdir -p fuzz/corpus-work
	PYTHONPATH=$(CURDIR)/$(PURE) $(PY) fuzz/fuzz_wire.py -max_total_time=$(FUZZ_SECONDS) fuzz/corpus-work fuzz/corpus
	# The same invariant on the compiled build: the mutation loop, seeded by what atheris found.
	$(PY) fuzz/fuzz_wire.py --no-atheris fuzz/corpus-work fuzz/corpus -seconds=$(FUZZ_SECONDS)

lint: build
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy --strict src

# PicoDNS beside dnsmasq and Unbound in front of a loopback Knot DNS, driven by dnsperf; writes
# BENCHMARKS.md (about 9 minutes). BENCH_QUICK=1 for a 2-minute smoke run.
bench: build
	$(PY) bench/run_bench.py

bench-wire: build
	$(PY) bench/bench_wire.py
	$(PY) bench/bench_hit.py

clean:
	rm -rf $(VENV) bin build *.egg-info src/*.so src/picodns/*.so
