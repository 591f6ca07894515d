#!/usr/bin/env bash
# The checks that need a GPU, in one run that fits a 10-minute slot on a machine with a
# GPU, torch with CUDA, nvcc, pytest and hypothesis (no network needed):
#   build     pip install --no-build-isolation --no-deps -e . for this device's architecture
#   test      tests/test_cuda.py and the CUDA cases of tests/test_bulk.py (the CPU tests are CI's)
#   bench     throughput at 2^28 for float32 and bfloat16, with Tensor.fill_(1.0) bandwidth in
#             the same run; init_module_ on the 48-layer width-512 transformer against a
#             torch.nn.init loop
#   memcheck  compute-sanitizer memcheck on the per-tensor, bulk and CUDA-graph paths
# Each step runs under `timeout`, within an overall deadline (GPU_CHECK_SECONDS, default 560).
# Into ${OUT:-/tmp/gpu_check} go at most 6 files: summary.txt, the benchmark results
# (cuda_throughput.{json,md}, bulk_init_cuda_<date>.{json,md}) and gpu_check_logs.tar.gz with
# every log. Exits non-zero if a step failed (a memcheck that compute-sanitizer cannot run on
# this device is reported as such, not as a failure).
#
#   bash scripts/gpu_check.sh              # everything
#   bash scripts/gpu_check.sh test bench   # some steps, after an earlier build
#   bash scripts/gpu_check.sh --dry-run    # print what would run; runs nothing
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
out="${OUT:-/tmp/gpu_check}"
python="${PYTHON:-python3}"
deadline=$((SECONDS + ${GPU_CHECK_SECONDS:-560}))
dry_run=0
steps=()
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry_run=1 ;;
    build | test | bench | memcheck) steps+=("$arg") ;;
    *)
      echo "gpu_check: unknown argument '$arg' (build, test, bench, memcheck, --dry-run)" >&2
      exit 2
      ;;
  esac
done
[ ${#steps[@]} -gt 0 ] || steps=(build test bench memcheck)

mkdir -p "$out"
logs="$(mktemp -d)"
export PYTHONUNBUFFERED=1
summary=()

if [ -z "${CUDA_HOME:-}" ]; then
  if [ -x /usr/local/cuda/bin/nvcc ]; then
    CUDA_HOME=/usr/local/cuda
  elif command -v nvcc >/dev/null; then
    CUDA_HOME="$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")"
  fi
fi
export CUDA_HOME="${CUDA_HOME:-}"
sanitizer="$(command -v compute-sanitizer || true)"
if [ -z "$sanitizer" ] && [ -n "$CUDA_HOME" ] && [ -x "$CUDA_HOME/bin/compute-sanitizer" ]; then
  sanitizer="$CUDA_HOME/bin/compute-sanitizer"
fi

# run NAME CAP_SECONDS COMMAND...: runs the command under timeout (the smaller of CAP and
# what the deadline leaves), logging to NAME.log; records its status in the summary.
run() {
  local name=$1 cap=$2 started=$SECONDS status left
  shift 2
  left=$((deadline - SECONDS - 15))
  [ "$cap" -lt "$left" ] || cap=$left
  if [ "$dry_run" -eq 1 ]; then
    echo "== $name (timeout ${cap}s): $*"
    return 0
  fi
  if [ "$cap" -lt 20 ]; then
    summary+=("$name: NOT RUN, the deadline is too near")
    return 1
  fi
  echo "== $name (timeout ${cap}s): $*"
  timeout --kill-after=10 "$cap" "$@" >"$logs/$name.log" 2>&1
  status=$?
  tail -n 25 "$logs/$name.log"
  if [ "$status" -eq 0 ]; then
    summary+=("$name: ok in $((SECONDS - started)) s")
  elif [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    summary+=("$name: TIMED OUT after $((SECONDS - started)) s")
  else
    summary+=("$name: FAILED (exit $status) after $((SECONDS - started)) s")
  fi
  return "$status"
}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1
  "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")' 2>&1
  "${CUDA_HOME:+$CUDA_HOME/bin/}nvcc" --version 2>&1 | tail -1
  echo "compute-sanitizer: ${sanitizer:-not found}"
} | tee "$logs/device.txt"

for step in "${steps[@]}"; do
  case "$step" in
    build)
      arch="$("$python" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())' 2>/dev/null || echo 9.0)"
      run build 240 env TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-$arch}" MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
        "$python" -m pip install --no-build-isolation --no-deps -v -e .
      ;;
    test)
      run test 180 "$python" -m pytest -q -rs -p no:cacheprovider tests/test_cuda.py tests/test_bulk.py -k cuda
      ;;
    bench)
      run bench_throughput 90 "$python" benchmarks/throughput.py --device cuda --dtype float32,bfloat16 --sizes 2^28 \
        --json "$out/cuda_throughput.json" --markdown "$out/cuda_throughput.md"
      run bench_bulk_init 75 "$python" benchmarks/bulk_init.py --devices cuda --widths 512 --layers 48 --save "$out"
      ;;
    memcheck)
      if [ -z "$sanitizer" ]; then
        echo "== memcheck: compute-sanitizer not found (PATH, \$CUDA_HOME/bin): not run"
        summary+=("memcheck: compute-sanitizer not found (PATH, \$CUDA_HOME/bin): not run")
        continue
      fi
      # Without torch's caching allocator every tensor is its own allocation, so memcheck
      # sees a write past a tensor's end; CUDA graphs need the caching allocator, so they
      # run in a second pass.
      for pass in kernels graph; do
        if [ "$pass" = kernels ]; then
          selection="(layouts and (nspl or uniform) and float32) or (small_and_odd and (float32 or float16))"
          selection+=" or (shards and float32 and not offset_like_global) or bulk_every_route"
          allocator=(env PYTORCH_NO_CUDA_MEMORY_CACHING=1)
        else
          selection="graph and not compile"
          allocator=(env)
        fi
        run "memcheck_$pass" 120 "${allocator[@]}" "$sanitizer" --tool memcheck --error-exitcode 1 --print-limit 20 \
          "$python" -m pytest -q -p no:cacheprovider tests/test_cuda.py -k "$selection"
        status=$?
        if [ "$dry_run" -eq 0 ] && [ "$status" -ne 0 ] &&
          grep -qE "Device not supported|device is not supported|Unable to find|error 999" "$logs/memcheck_$pass.log"; then
          unset 'summary[${#summary[@]}-1]'
          summary+=("memcheck_$pass: compute-sanitizer refused this device (see its log); not a failure of the kernels")
          break
        fi
      done
      ;;
  esac
done

if [ "$dry_run" -eq 1 ]; then
  echo "gpu_check: dry run; results would go to $out"
  rm -rf "$logs"
  exit 0
fi
{
  echo "gpu_check summary"
  cat "$logs/device.txt"
  printf '%s\n' "${summary[@]}"
} >"$out/summary.txt"
failed=0
grep -qE "FAILED|TIMED OUT|NOT RUN" "$out/summary.txt" && failed=1
tar -czf "$out/gpu_check_logs.tar.gz" -C "$logs" .
rm -rf "$logs"
echo
cat "$out/summary.txt"
ls -1 "$out"
exit "$failed"
