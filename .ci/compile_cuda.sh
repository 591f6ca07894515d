#!/usr/bin/env bash
# Compiles nspl_filler's CUDA kernels on a machine without a GPU, checks the result
# imports with them registered, prints each translation unit's compile time (the kernels
# are split into one unit per dtype and op), checks that no kernel uses local memory or a
# stack frame, and checks the kernels' SASS instruction budget. Uses a venv of its own
# (.venv-cuda, reused when present) with the CUDA build of torch, and builds a wheel from a
# scratch copy of the working tree, so neither the CPU build (.venv, nspl_filler/_C*.so) nor
# build/ in the tree is touched.
#
#   bash .ci/compile_cuda.sh
#   SASS_BUDGETS_UPDATE=1 bash .ci/compile_cuda.sh   # re-record tools/sass_budgets.json instead of checking it
#
# Honours MAX_JOBS (default 2), TORCH_CUDA_ARCH_LIST (default: setup.py's) and CUDA_HOME
# (default /usr/local/cuda, else the toolkit holding nvcc).
set -euo pipefail

TORCH_VERSION=2.14.1  # a CUDA 13 build: the newest torch pip installs on these machines

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-cuda"
started=$SECONDS

source "$root/scripts/cuda_home.sh" compile_cuda
echo "compile_cuda: CUDA_HOME=$CUDA_HOME ($("$CUDA_HOME/bin/nvcc" --version | tail -1))"

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q "torch==$TORCH_VERSION" numpy ninja pybind11 setuptools wheel
echo "compile_cuda: torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)') ready after $((SECONDS - started)) s"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/src"
# Tracked and untracked-but-not-ignored files that exist: what a clean checkout would build.
(cd "$root" && git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done |
  xargs -0 cp --parents -t "$scratch/src")

build_started=$SECONDS
(cd "$scratch/src" && FORCE_CUDA=1 MAX_JOBS="${MAX_JOBS:-2}" \
  "$venv/bin/python" -m pip wheel -q --no-build-isolation --no-deps -w "$scratch/wheel" .)
echo "compile_cuda: built the CUDA extension in $((SECONDS - build_started)) s with MAX_JOBS=${MAX_JOBS:-2} on $(nproc) cores"
# Each unit's compile time, from ninja's log (milliseconds from the build's start): with one
# job per core the build takes about as long as the slowest unit plus the link.
ninja_log="$(find "$scratch/src/build" -name .ninja_log 2>/dev/null | head -n 1)"
if [ -n "$ninja_log" ]; then
  echo "compile_cuda: compile time per translation unit (load average $(cut -d' ' -f1-3 /proc/loadavg)):"
  awk -F'\t' '!/^#/ { n = split($4, p, "/"); printf "%8.1f s  %s\n", ($2 - $1) / 1000, p[n] }' "$ninja_log" |
    sort -rn | head -n 30
fi
"$venv/bin/python" -m pip install -q --force-reinstall --no-deps "$scratch"/wheel/nspl_filler-*.whl

# The C++ library as the wheel installs it (CUDA kernels in lib/libnspl_filler.so, headers,
# the CMake package): examples/cpp built with CMake against the installed package and the CUDA
# build of torch, run, and its values compared with Python's. From outside the tree, as below.
# torch's CMake package finds the toolkit through CUDA_PATH, and without a GPU to query it
# needs TORCH_CUDA_ARCH_LIST (the example compiles no CUDA code, so any list will do).
"$venv/bin/python" -m pip install -q pytest
(cd "$scratch" && CUDA_PATH="$CUDA_HOME" TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" \
  PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider "$root/tests/test_cpp_library.py")
echo "compile_cuda: C++ library of the wheel checked after $((SECONDS - started)) s"

# From outside the tree, so the installed wheel is imported, not ./nspl_filler.
(cd "$scratch" && "$venv/bin/python" - <<'PY'
import torch
import nspl_filler

assert nspl_filler.cuda_built, "nspl_filler was built without its CUDA kernels"
for op in ("nspl_", "nspl_many_", "symmetric_power_law_", "symmetric_uniform_", "normal_"):
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"nspl_filler::{op}", "CUDA"), op
# The CPU path of the same build still fills.
t = nspl_filler.fill_(torch.empty(8, 8), seed=1)
assert torch.isfinite(t).all() and t.abs().min() > 0
print(f"compile_cuda: nspl_filler imports with CUDA kernels under torch {torch.__version__}")
PY
)
# The instruction budget of the kernels' hot loops, read from the wheel's sm_90 code: fails
# when a kernel issues more instructions per Philox block than tools/sass_budgets.json
# records (re-record with tools/sass_budget.py --update when a change is meant).
if [[ "${TORCH_CUDA_ARCH_LIST:-9.0}" == *9.0* ]]; then
  # The kernels live in the library the extension module links (libnspl_filler.so).
  so="$(cd "$scratch" && "$venv/bin/python" -c 'import nspl_filler.cpp; print(nspl_filler.cpp.library_path)')"
  "$venv/bin/python" "$root/tools/sass_budget.py" --so "$so" --resources
  if [ "${SASS_BUDGETS_UPDATE:-0}" = 1 ]; then
    "$venv/bin/python" "$root/tools/sass_budget.py" --so "$so" --update >/dev/null
  else
    "$venv/bin/python" "$root/tools/sass_budget.py" --so "$so" --check
  fi
else
  echo "compile_cuda: TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST has no sm_90 code: SASS budget and resources not checked"
fi
echo "compile_cuda: ok in $((SECONDS - started)) s"
