#!/usr/bin/env bash
# The checks that need a GPU, in one run of at most 7 minutes (build included) on a machine
# with a GPU, torch with CUDA, nvcc, pytest and hypothesis, no network needed. Steps, most
# valuable first, each under `timeout` with a cap; the caps add to at most the deadline
# (GPU_CHECK_SECONDS, default 420), and each is cut further to what the deadline leaves:
#
#   preflight         15 s  ninja, setuptools >= 64, numpy, scipy, hypothesis, pytest, nvcc,
#                           compute-sanitizer, the GPU: what is missing is named in the summary
#   build            150 s  the library and _C for this device's architecture (MAX_JOBS = cores),
#                           or only _C over a prebuilt library (below)
#   test             115 s  tests/test_cuda.py and the CUDA cases of test_bulk.py, test_names.py,
#                           test_caffe_fillers.py (no opcheck or torch.compile: CI covers the fakes)
#   bench_throughput  45 s  fills at 2^28 for float32 and bfloat16 against Tensor.fill_(1.0)
#                           bandwidth and uniform_, in the same run
#   bench_bulk_init   30 s  init_module_ on the 48-layer width-512 transformer against a
#                           torch.nn.init loop
#   memcheck_kernels  35 s  compute-sanitizer memcheck of the per-tensor and bulk kernels
#   memcheck_graph    20 s  the same under CUDA-graph capture
#                   ----
#                    410 s  + 10 s to write the results = 420 s
#
# Build time. The kernels are split into one translation unit per dtype and op
# (csrc/cuda/fill_cuda_<dtype>.cu, fill_many_cuda_<dtype>.cu) so MAX_JOBS=16 compiles them
# at once; the build takes about as long as its slowest unit plus the link. Measured with
# TORCH_CUDA_ARCH_LIST=9.0 on a 2-core x86-64 machine shared with other builds (load average
# 11-15; nvcc 13.0, torch 2.14.1), 2026-12-03: the slowest unit, csrc/cuda/fill_cuda.cu,
# takes 59 s of CPU (214 s wall alone, 562 s wall in the MAX_JOBS=2 build); the slowest
# kernel unit, fill_cuda_float64.cu, 44 s of CPU. With 16 idle cores the library builds in
# about a minute and _C (bindings.cpp, after it) in about another: some 2 minutes of the
# build's 150 s cap (docs/gpu.md has every unit).
#
# Prebuilt path. The C++ library (nspl_filler/lib/libnspl_filler.so: kernels, ops) has no
# Python dependency; only the small bindings module _C does. scripts/prebuild_cuda_library.sh
# builds the library elsewhere against the device's exact torch (2.11.0, CUDA 13) into
# .prebuilt/, with a fingerprint of the sources and of that torch. When .prebuilt/ is there
# and its fingerprint matches this checkout and this torch, the build step compiles only _C
# (bindings.cpp) and links it to the prebuilt library; otherwise it builds everything. The
# mechanism is checked (setup.py builds _C over a prebuilt library, which then imports and
# fills); a CUDA library built by that script against torch 2.11.0+cu130 has not yet been
# built and loaded on the GPU machine, so the from-source build stays the default path.
#
# Into ${OUT:-/tmp/gpu_check} go at most 6 files, rewritten after every step so a run cut
# short still returns what it measured: summary.txt (steps, pytest's counts and skip
# reasons, what the preflight missed), gpu_check_logs.tar.gz (every log), and the benchmark
# results cuda_throughput_<device>_<date>.{json,md} and bulk_init_cuda_<device>_<date>.{json,md},
# which are also copied to benchmarks/results/. Exits non-zero if a step failed, timed out or
# was not run (a memcheck that compute-sanitizer cannot run on this device is reported as
# such, not as a failure).
#
#   bash scripts/gpu_check.sh              # everything
#   bash scripts/gpu_check.sh test bench   # some steps, after an earlier build
#   bash scripts/gpu_check.sh --dry-run    # the preflight, then the plan with its caps; builds nothing
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
out="${OUT:-/tmp/gpu_check}"
python="${PYTHON:-python3}"
budget="${GPU_CHECK_SECONDS:-420}"
started_at=$SECONDS
deadline=$((SECONDS + budget))
# Seconds kept back from the deadline to write the results.
reserve=10
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

# Caps in seconds, in the order the steps run.
declare -A cap=([preflight]=15 [build]=150 [test]=115 [bench_throughput]=45 [bench_bulk_init]=30
  [memcheck_kernels]=35 [memcheck_graph]=20)
# GPU_CHECK_CAP_<STEP>=seconds overrides one (e.g. GPU_CHECK_CAP_TEST=60).
for name in "${!cap[@]}"; do
  override="GPU_CHECK_CAP_${name^^}"
  [ -n "${!override:-}" ] && cap[$name]=${!override}
done
# The steps that will run, and their caps' sum with the reserve: at most the deadline.
planned=(preflight)
for step in "${steps[@]}"; do
  case "$step" in
    bench) planned+=(bench_throughput bench_bulk_init) ;;
    memcheck) planned+=(memcheck_kernels memcheck_graph) ;;
    *) planned+=("$step") ;;
  esac
done
total=$reserve
for name in "${planned[@]}"; do total=$((total + cap[$name])); done
if [ "$total" -gt "$budget" ]; then
  echo "gpu_check: the step caps and the ${reserve} s reserve add to ${total} s, over the deadline of ${budget} s" >&2
  exit 2
fi

mkdir -p "$out"
logs="$(mktemp -d)"
export PYTHONUNBUFFERED=1
summary=()
missing=()
day="$(date -u +%Y-%m-%d)"

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

# summary.txt and the log archive, as they stand: written after every step.
write_results() {
  [ "$dry_run" -eq 1 ] && return 0
  {
    echo "gpu_check summary ($((SECONDS - started_at)) s of a ${budget} s deadline)"
    cat "$logs/device.txt" 2>/dev/null
    if [ ${#missing[@]} -gt 0 ]; then
      printf 'preflight: MISSING %s\n' "${missing[@]}"
    else
      echo "preflight: everything found"
    fi
    printf '%s\n' "${summary[@]}"
    for f in "$logs"/test.log "$logs"/memcheck_kernels.log "$logs"/memcheck_graph.log; do
      [ -f "$f" ] || continue
      echo "--- pytest, $(basename "$f" .log): skip reasons and final counts"
      grep -E "^SKIPPED|^FAILED|^ERROR" "$f" | head -n 40
      grep -E "[0-9]+ (passed|failed|skipped|error|deselected)" "$f" | tail -n 1
    done
  } >"$out/summary.txt"
  tar -czf "$out/gpu_check_logs.tar.gz" -C "$logs" . 2>/dev/null
}

# run NAME COMMAND...: runs the command under timeout (the smaller of its cap and what the
# deadline leaves), logging to NAME.log; records its status in the summary.
run() {
  local name=$1 limit=${cap[$1]} started=$SECONDS status left
  shift
  left=$((deadline - SECONDS - reserve))
  [ "$limit" -lt "$left" ] || limit=$left
  if [ "$dry_run" -eq 1 ]; then
    echo "== $name (cap ${cap[$name]} s): $*"
    return 0
  fi
  if [ "$left" -lt 5 ]; then
    summary+=("$name: NOT RUN, the deadline is too near")
    write_results
    return 1
  fi
  echo "== $name (timeout ${limit} s): $*"
  timeout --kill-after=5 "$limit" "$@" >"$logs/$name.log" 2>&1
  status=$?
  tail -n 25 "$logs/$name.log"
  if [ "$status" -eq 0 ]; then
    summary+=("$name: ok in $((SECONDS - started)) s")
  elif [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    summary+=("$name: TIMED OUT after $((SECONDS - started)) s (cap ${cap[$name]} s)")
  else
    summary+=("$name: FAILED (exit $status) after $((SECONDS - started)) s")
  fi
  write_results
  return "$status"
}

# ------------------------------------------------------------------------- preflight
# The device, and what the later steps need, each missing one named: a missing ninja makes
# the build serial, a missing scipy or hypothesis skips tests that would still print "ok".
# One Python process (importing torch takes seconds), under the preflight's cap.
step_started=$SECONDS
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null ||
    echo "nvidia-smi: not found or failed"
  "${CUDA_HOME:+$CUDA_HOME/bin/}nvcc" --version 2>&1 | tail -1
  echo "compute-sanitizer: ${sanitizer:-not found}"
  echo "cores: $(nproc)"
} >"$logs/device.txt"
timeout "${cap[preflight]}" "$python" - >"$logs/preflight.txt" 2>&1 <<'PY'
import importlib, re, shutil
for name in ("numpy", "scipy", "hypothesis", "pytest", "pybind11"):
    try:
        importlib.import_module(name)
    except Exception as error:
        print(f"missing: {name} ({type(error).__name__})")
try:
    import setuptools
    if int(setuptools.__version__.split(".")[0]) < 64:
        print(f"missing: setuptools >= 64 (found {setuptools.__version__}: no editable install)")
except Exception:
    print("missing: setuptools")
try:
    import ninja  # noqa: F401
except Exception:
    if shutil.which("ninja") is None:
        print("missing: ninja (the build would compile one file at a time)")
try:
    import torch
    print(f"device: torch {torch.__version__} cuda {torch.version.cuda}")
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        print(f"device: {name}, compute capability {'%d.%d' % torch.cuda.get_device_capability()}")
        print("slug:", re.sub(r"[^a-z0-9]+", "_", name.lower().replace("nvidia", "")).strip("_"))
    else:
        print(f"missing: a GPU visible to torch {torch.__version__}")
except Exception as error:
    print(f"missing: torch ({type(error).__name__}: {error})")
PY
status=$?
[ "$status" -eq 0 ] || missing+=("the preflight's Python checks (exit status $status; preflight.txt in the logs)")
sed -n 's/^device: //p' "$logs/preflight.txt" >>"$logs/device.txt"
while IFS= read -r line; do missing+=("$line"); done < <(sed -n 's/^missing: //p' "$logs/preflight.txt")
[ -n "$CUDA_HOME" ] && [ -x "$CUDA_HOME/bin/nvcc" ] || missing+=("nvcc (set CUDA_HOME)")
[ -n "$sanitizer" ] || missing+=("compute-sanitizer (PATH, \$CUDA_HOME/bin): memcheck not run")
device_slug="$(sed -n 's/^slug: //p' "$logs/preflight.txt")"
device_slug="${device_slug:-unknown_gpu}"
cat "$logs/device.txt"
for m in "${missing[@]}"; do echo "preflight: MISSING $m"; done
[ ${#missing[@]} -gt 0 ] || echo "preflight: everything found"
summary+=("preflight: done in $((SECONDS - step_started)) s (cap ${cap[preflight]} s)")
write_results

# The prebuilt library is used when its fingerprint (sources, torch version and CUDA) is
# this checkout's under this torch; prints why not otherwise.
prebuilt_matches() {
  [ -f .prebuilt/libnspl_filler.so ] || { echo "no .prebuilt/libnspl_filler.so"; return 1; }
  "$python" scripts/prebuilt_fingerprint.py --check .prebuilt/FINGERPRINT
}

for step in "${steps[@]}"; do
  case "$step" in
    build)
      arch="$("$python" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())' 2>/dev/null || echo 9.0)"
      if why="$(prebuilt_matches 2>&1)"; then
        echo "gpu_check: using the prebuilt library in .prebuilt/ ($why); building _C only"
        summary+=("build: prebuilt library ($why)")
        run build env NSPL_PREBUILT_LIBRARY=.prebuilt/libnspl_filler.so MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
          "$python" -m pip install --no-build-isolation --no-deps -v -e .
      else
        echo "gpu_check: building everything (prebuilt library not used: $why)"
        summary+=("build: from source (prebuilt library not used: $why)")
        run build env TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-$arch}" MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
          "$python" -m pip install --no-build-isolation --no-deps -v -e .
      fi
      ;;
    test)
      run test "$python" -m pytest -q -rs -p no:cacheprovider tests/test_cuda.py tests/test_bulk.py \
        tests/test_names.py tests/test_caffe_fillers.py -k "cuda and not opcheck and not compile"
      ;;
    bench)
      run bench_throughput "$python" benchmarks/throughput.py --device cuda --dtype float32,bfloat16 --sizes 2^28 \
        --json "$out/cuda_throughput_${device_slug}_$day.json" --markdown "$out/cuda_throughput_${device_slug}_$day.md"
      run bench_bulk_init "$python" benchmarks/bulk_init.py --devices cuda --widths 512 --layers 48 --save "$logs/bulk"
      for f in "$logs"/bulk/bulk_init_cuda_*; do
        [ -f "$f" ] && cp "$f" "$out/$(basename "$f" | sed "s/^bulk_init_cuda_/bulk_init_cuda_${device_slug}_/")"
      done
      if [ "$dry_run" -eq 0 ]; then
        mkdir -p benchmarks/results
        cp "$out"/cuda_throughput_* "$out"/bulk_init_cuda_* benchmarks/results/ 2>/dev/null
      fi
      ;;
    memcheck)
      if [ -z "$sanitizer" ]; then
        echo "== memcheck: compute-sanitizer not found (PATH, \$CUDA_HOME/bin): not run"
        summary+=("memcheck: compute-sanitizer not found (PATH, \$CUDA_HOME/bin): not run")
        continue
      fi
      # Without torch's caching allocator every tensor is its own allocation, so memcheck
      # sees a write past a tensor's end; CUDA graphs need the caching allocator, so they
      # run in a second pass. A few cases per kernel: memcheck runs them many times slower.
      for pass in kernels graph; do
        if [ "$pass" = kernels ]; then
          selection="(layouts and nspl and float32) or (small_and_odd and float16)"
          selection+=" or (shards and (dim0 or block) and float32 and contiguous) or bulk_every_route"
          selection+=" or (bulk_tables and log_uniform and names)"
          allocator=(env PYTORCH_NO_CUDA_MEMORY_CACHING=1)
        else
          selection="graph and not compile"
          allocator=(env)
        fi
        run "memcheck_$pass" "${allocator[@]}" "$sanitizer" --tool memcheck --error-exitcode 1 --print-limit 20 \
          "$python" -m pytest -q -p no:cacheprovider tests/test_cuda.py -k "$selection"
        status=$?
        if [ "$dry_run" -eq 0 ] && [ "$status" -ne 0 ] &&
          grep -qE "Device not supported|device is not supported|Unable to find|error 999" "$logs/memcheck_$pass.log"; then
          unset 'summary[${#summary[@]}-1]'
          summary+=("memcheck_$pass: compute-sanitizer refused this device (see its log); not a failure of the kernels")
          write_results
          break
        fi
      done
      ;;
  esac
done

if [ "$dry_run" -eq 1 ]; then
  cat "$logs/preflight.txt"
  echo "gpu_check: dry run; the caps of ${planned[*]} add to $((total - reserve)) s, + ${reserve} s to write the results = ${total} s of a ${budget} s deadline; results would go to $out"
  rm -rf "$logs"
  exit 0
fi
write_results
rm -rf "$logs"
echo
cat "$out/summary.txt"
ls -1 "$out"
grep -qE "FAILED|TIMED OUT|NOT RUN" "$out/summary.txt" && exit 1
exit 0
