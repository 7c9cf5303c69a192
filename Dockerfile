# A CUDA image with the GPU extra and the `factory` command; also the image for Hugging Face Jobs
# (FACTORY_BACKEND=hf-jobs, FACTORY_JOBS_IMAGE): no ENTRYPOINT, because a Job's command is the whole command line.
#   docker build -t model-factory .
#   docker run --gpus all -e HF_TOKEN -v $PWD:/work model-factory factory run /work/request.yaml
FROM nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 FACTORY_HOME=/data/factory HF_HOME=/data/hf
RUN apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev git \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /opt/factory
COPY pyproject.toml README.md ./
COPY factory ./factory
COPY evals ./evals
# CUDA torch from PyPI, then the project with the GPU extra (flash-attn builds against it) and llama.cpp for
# GGUF export (export.gguf: it quantizes and runs the files on the CPU; built for AVX2, not the build host).
RUN apt-get update && apt-get install -y --no-install-recommends cmake build-essential && rm -rf /var/lib/apt/lists/* \
    && pip install --upgrade pip packaging ninja wheel scikit-build-core \
    && pip install "torch>=2.4" \
    && CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
       pip install --no-build-isolation ".[gpu,gguf]"

VOLUME /data
CMD ["factory", "--help"]
