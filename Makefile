# The README's two commands for a fresh machine: `make reproduce` and `make test`. Both install what they need.
SHELL   := /bin/bash
PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PROFILE ?= tiny
# a bare `torch` pulls a multi-GB CUDA build from the index: always pin it here
TORCH   := torch==2.14.1 torchvision==0.29.1
STAMP   := $(VENV)/.installed

.PHONY: install reproduce test lint-sync export nbtest pytest docs docs-offline lab bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

install: $(STAMP)

## the main job: the mini-world experiment on the default profile (override with PROFILE=smoke|tiny|gpu|paper)
reproduce: install
	$(BIN)/jigsaw-forget run --profile $(PROFILE)

## notebooks and library in sync, notebooks clean, notebook tests, then pytest
test: install lint-sync nbtest pytest

lint-sync: install
	@before=$$(git status --porcelain -- jigsaw_forget nbs README.md; git diff -- jigsaw_forget nbs README.md); \
	$(MAKE) --no-print-directory export; \
	after=$$(git status --porcelain -- jigsaw_forget nbs README.md; git diff -- jigsaw_forget nbs README.md); \
	if [ "$$before" != "$$after" ]; then \
	  echo "nbdev-export/nbdev-clean/README changed files: notebooks, library and README are not in sync (or notebooks not clean)."; \
	  git status --short -- jigsaw_forget nbs README.md; exit 1; fi; echo "notebooks, library and README in sync; notebooks clean"

## regenerate the library and README from the notebooks (what to run before committing)
export: install
	$(BIN)/nbdev-export
	$(BIN)/nbdev-clean
	$(BIN)/jupyter nbconvert --log-level WARN --to markdown nbs/index.ipynb --output-dir . --output README

nbtest: install
	$(BIN)/nbdev-test --n-workers 2 --timing

pytest: install
	$(BIN)/python -m pytest -q -ra

## the docs site (needs Quarto); `docs-offline` checks the doc pages build without it
docs: install
	$(BIN)/nbdev-docs

docs-offline: install
	$(BIN)/python -m pytest -q tests/test_docs.py

## benchmarks (not tests): where time goes, written as JSON under bench/results/
bench: install
	$(BIN)/python bench/grpo_step_profile.py

lab: install
	$(BIN)/jupyter lab nbs/

clean:
	rm -rf runs/smoke _proc _docs
