# Two commands do everything on a fresh machine (Python 3.11, a C++17 compiler, cmake):
#   make demo   set up the environment and run the main job
#   make test   set up the environment and run the checks and the test suite
# Both are idempotent: a second run reuses the virtual environment and the build directory.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEPS_STAMP := $(VENV)/.deps-installed
CPP_FILES = $(shell find cpp -name '*.hpp' -o -name '*.cpp')

.PHONY: setup build demo test lint bench clean

$(DEPS_STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt "scikit-build-core>=0.10" "pybind11>=2.13" torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt --no-build-isolation -e ".[dev]"
	touch $@

# The editable build: CMake rebuilds incrementally in build/.
build: $(DEPS_STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt --no-build-isolation --no-deps -e .

setup: build

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
