# Two commands do everything on a fresh machine (Python 3.11, a C++17 compiler, cmake):
#   make demo   set up the environment and run the main job
#   make test   set up the environment and run the checks and the test suite
# Both are idempotent: a second run reuses the virtual environment and the build directory.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEPS_STAMP := $(VENV)/.deps-installed
CPP_FILES = $(shell find cpp -name '*.hpp' -o -name '*.cpp')

.PHONY: setup build demo test lint bench clean perf-analyzer postgres

$(DEPS_STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt "scikit-build-core>=0.10" "pybind11>=2.13" torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt --no-build-isolation -e ".[dev]"
	touch $@

# The editable build: CMake rebuilds incrementally in build/.
build: $(DEPS_STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt --no-build-isolation --no-deps -e .

# Triton's perf_analyzer (benchmark report, tests): the binary ships in the tritonclient 2.51
# wheel; it needs Debian's libb64-0d (and a libcudart.so.12, linked at run time from
# nvidia-pytriton's libraries by adrank.benchmark.perf_analyzer).
PERF_ANALYZER := $(BIN)/perf_analyzer
$(PERF_ANALYZER): $(DEPS_STAMP)
	dpkg -s libb64-0d >/dev/null 2>&1 || (apt-get update -q && apt-get install -y -q libb64-0d)
	$(BIN)/python -m pip download -q --no-deps -d build/wheels tritonclient==2.51.0
	$(BIN)/python -c "import zipfile, glob; w = zipfile.ZipFile(glob.glob('build/wheels/tritonclient-2.51.0-*.whl')[0]); open('$@', 'wb').write(w.read('tritonclient-2.51.0.data/data/bin/perf_analyzer'))"
	chmod +x $@

perf-analyzer: $(PERF_ANALYZER)

# PostgreSQL server binaries: the networked control store's tests start a private server.
postgres:
	command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
		|| (apt-get update -q && apt-get install -y -q postgresql)

setup: build $(PERF_ANALYZER) postgres

demo: setup
	$(BIN)/adrank demo

lint: $(DEPS_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/clang-format --dry-run --Werror $(CPP_FILES)

test: setup lint
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

bench: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest bench --benchmark-only

clean:
	rm -rf build $(VENV)
