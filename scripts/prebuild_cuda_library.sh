#!/usr/bin/env bash
# Builds nspl_filler's C++ library (nspl_filler/lib/libnspl_filler.so: the ops and the CUDA
# kernels; it has no Python dependency) on a machine without a GPU, against the exact torch
# of the GPU machine, into .prebuilt/ with its FINGERPRINT (scripts/prebuilt_fingerprint.py).
# Carried to the GPU machine beside the checkout, it lets scripts/gpu_check.sh compile only
# the bindings module _C there (one small C++ file, against that machine's Python) instead of
# every CUDA unit. gpu_check.sh uses it only when the fingerprint matches: same sources, same
# torch release and CUDA version, the GPU's compute capability compiled.
#
#   bash scripts/prebuild_cuda_library.sh            # torch 2.11.0 (CUDA 13.0), sm_90
#   TORCH_VERSION=2.14.1 TORCH_CUDA_ARCH_LIST="8.0;9.0" bash scripts/prebuild_cuda_library.sh
#
# The library links torch's C++ libraries (libtorch_cpu, libtorch_cuda, libc10, libc10_cuda),
# which are the same files in a CUDA wheel of one torch release for any Python version, so it
# is built in a venv of this machine's Python (.venv-torch<version>) with that torch. No -g;
# debug sections are stripped, so it stays well within what a carry holds. The GPU machine
# must have what the library needs at load time: torch's libraries (loaded by `import torch`),
# libcudart.so.13 (torch's), libgomp.so.1 and a libstdc++ at least as new as this machine's.
# Honours MAX_JOBS (default 2) and CUDA_HOME (default /usr/local/cuda, else nvcc's toolkit).
set -euo pipefail

TORCH_VERSION="${TORCH_VERSION:-2.11.0}"
ARCH="${TORCH_CUDA_ARCH_LIST:-9.0}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-torch${TORCH_VERSION//./}"
started=$SECONDS

source "$root/scripts/cuda_home.sh" prebuild

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# torch's own requirements bring the CUDA headers that the toolkit may lack (cusparse.h, ...).
"$venv/bin/python" -m pip install -q "torch==$TORCH_VERSION" numpy ninja pybind11 "setuptools>=64" wheel
echo "prebuild: torch $("$venv/bin/python" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)') ready after $((SECONDS - started)) s"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
(cd "$root" && git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done |
  xargs -0 cp --parents -t "$scratch")

build_started=$SECONDS
(cd "$scratch" && NSPL_LIBRARY_ONLY=1 FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$ARCH" MAX_JOBS="${MAX_JOBS:-2}" \
  "$venv/bin/python" setup.py -q build_ext)
library="$(find "$scratch/build" -name libnspl_filler.so | head -n 1)"
[ -n "$library" ] || { echo "prebuild: the build made no libnspl_filler.so" >&2; exit 1; }
echo "prebuild: built the library in $((SECONDS - build_started)) s"

mkdir -p "$root/.prebuilt"
cp "$library" "$root/.prebuilt/libnspl_filler.so"
strip --strip-debug "$root/.prebuilt/libnspl_filler.so"
# The fingerprint of the scratch copy's sources: what was built, even if the tree changed since.
(cd "$scratch" && "$venv/bin/python" scripts/prebuilt_fingerprint.py --write "$root/.prebuilt/FINGERPRINT" --arch "$ARCH")
echo "prebuild: .prebuilt/libnspl_filler.so ($(du -h "$root/.prebuilt/libnspl_filler.so" | cut -f1)), FINGERPRINT:"
cat "$root/.prebuilt/FINGERPRINT"
echo "prebuild: done in $((SECONDS - started)) s; carry .prebuilt to the GPU machine and run scripts/gpu_check.sh there"
