# Sourced by the scripts that compile CUDA code: sets and exports CUDA_HOME when the caller
# has not, to /usr/local/cuda or else the toolkit that holds nvcc (torch would guess the same,
# and then miss lib64 when nvcc is a wrapper outside the toolkit). $1 names the caller in the
# error message.
if [ -z "${CUDA_HOME:-}" ]; then
  if [ -x /usr/local/cuda/bin/nvcc ]; then
    CUDA_HOME=/usr/local/cuda
  elif command -v nvcc >/dev/null; then
    CUDA_HOME="$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")"
  else
    echo "$1: no CUDA toolkit (nvcc) found; set CUDA_HOME" >&2
    exit 1
  fi
fi
export CUDA_HOME
