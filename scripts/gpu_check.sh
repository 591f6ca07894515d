#!/usr/bin/env bash
# The checks that need a GPU, for a machine that has one (and torch with CUDA, nvcc,
# pytest, scipy; no network needed). Steps, all by default, or the ones named:
#   build     pip install --no-build-isolation -e . for this device's architecture
#   test      pytest -q tests (the CUDA tests included)
#   memcheck  compute-sanitizer memcheck over the CUDA tests that exercise every kernel path
#   bench     benchmarks/throughput.py and benchmarks/bulk_init.py on CUDA
# Logs and results go to ${OUT:-/tmp/out}. Exits non-zero if any step failed.
#
#   bash scripts/gpu_check.sh              # everything
#   bash scripts/gpu_check.sh test bench   # after an earlier build on the same machine
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${OUT:-/tmp/out}"
mkdir -p "$out"
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(build test memcheck bench)
python="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
failed=()

run_step() {  # name, command...: runs it, logging to $out/name.log
  local name=$1 started=$SECONDS status
  shift
  echo "== $name: $*"
  "$@" 2>&1 | tee "$out/$name.log"
  status=${PIPESTATUS[0]}
  echo "== $name: exit $status after $((SECONDS - started)) s"
  [ "$status" -eq 0 ] || failed+=("$name")
}

{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())'
  nvcc --version | tail -1
} 2>&1 | tee "$out/device.txt"

for step in "${steps[@]}"; do
  case "$step" in
    build)
      if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda; fi
      # Only this device's architecture: a third of the compile time of the default list.
      arch="$("$python" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')"
      run_step build env TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-$arch}" \
        "$python" -m pip install --no-build-isolation --no-deps -v -e .
      ;;
    test)
      run_step test "$python" -m pytest -q -rs tests
      ;;
    memcheck)
      # Without torch's caching allocator every tensor is its own allocation, so memcheck
      # sees a write past a tensor's end. CUDA graphs and the memory statistics need the
      # caching allocator, and the small-tensor tests below reach every kernel path.
      run_step memcheck env PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
        compute-sanitizer --tool memcheck --error-exitcode 1 --print-limit 20 \
        "$python" -m pytest -q tests/test_cuda.py -k "layouts or shards or small_and_odd or offsets or contiguous_matches"
      ;;
    bench)
      # Issue goals: float32 and bfloat16 at 2^28 against torch's samplers and the card's write
      # bandwidth (Tensor.fill_(1.0)); whole-model init against the torch.nn.init loop.
      run_step bench "$python" benchmarks/throughput.py --device cuda --dtype float32,bfloat16 \
        --sizes 2^28 --json "$out/cuda_throughput.json" --markdown "$out/cuda_throughput.md"
      run_step bulk "$python" benchmarks/bulk_init.py --devices cuda --save "$out"
      ;;
    *)
      echo "gpu_check: unknown step '$step' (build, test, memcheck, bench)" >&2
      failed+=("$step")
      ;;
  esac
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "gpu_check: FAILED: ${failed[*]} (logs in $out)"
  exit 1
fi
echo "gpu_check: all steps passed (logs in $out)"
