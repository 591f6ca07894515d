#!/usr/bin/env bash
# The C++ core under AddressSanitizer and UndefinedBehaviorSanitizer: built with SANITIZE=1
# (setup.py) in build/sanitizers, apart from the in-place build, and imported from there by
# the tests that drive the C++ code (ops, extremes, properties, overlap, the C++ library).
# Python is not built with ASan, so its runtime is preloaded (with libstdc++); Python and torch keep memory
# until exit by design, so leak detection is off. Any finding aborts the test process and
# fails this script.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
PY=${PY:-.venv/bin/python}
OUT=$PWD/build/sanitizers

# The build's own chatter (setuptools' warnings) goes to a log, shown if the build fails.
mkdir -p "$OUT"
if ! SANITIZE=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} "$PY" setup.py -q build --build-base "$OUT" --build-lib "$OUT/lib" >"$OUT/build.log" 2>&1; then
  tail -n 60 "$OUT/build.log" >&2
  echo "sanitizers: the instrumented build failed (log: $OUT/build.log)" >&2
  exit 1
fi
echo "== sanitizer build done in $((SECONDS - start)) s"

libasan=$(gcc -print-file-name=libasan.so)
# The C++ runtime is preloaded with it: python does not link libstdc++, and ASan, set up
# before it is loaded, finds no __cxa_throw to intercept and aborts at the first C++ throw.
libstdcxx=$(g++ -print-file-name=libstdc++.so)
for runtime in "$libasan" "$libstdcxx"; do
  if [ ! -f "$runtime" ]; then
    echo "sanitizers: the compiler has no $(basename "$runtime") ($runtime)" >&2
    exit 1
  fi
done
# The tests must import the instrumented build, not the in-place one: PYTHONPATH comes
# before the editable install's finder, and PYTHONSAFEPATH keeps the current folder (the
# checkout, with its in-place build) off sys.path. A wrong import fails here, not later.
export PYTHONSAFEPATH=1

export PYTHONPATH=$OUT/lib
# The sanitizer link keeps every library it is given (libtorch.so among them), and the
# library's RUNPATH, $ORIGIN/../../torch/lib, finds torch only once it is installed beside
# it in site-packages: the C++ programs of test_cpp_library find torch through this path.
export LD_LIBRARY_PATH=$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_PRELOAD="$libasan $libstdcxx"
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1:print_summary=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# The instrumented library refuses to load unless the ASan runtime comes first, so the
# check of which build is imported runs with the runtimes preloaded.
"$PY" -c "import nspl_filler, sys; f = nspl_filler.__file__; sys.exit(0 if '$OUT/lib' in f else f'imported {f}')"

# The build is instrumented (both runtimes linked) and the preloaded runtime catches: a
# deliberate heap overflow must kill its process, or a clean run below proves nothing.
for lib in "$OUT"/lib/nspl_filler/lib/libnspl_filler.so "$OUT"/lib/nspl_filler/_C*.so; do
  for runtime in libasan libubsan; do
    readelf -d "$lib" | grep -q "NEEDED.*$runtime" || { echo "sanitizers: $lib does not link $runtime" >&2; exit 1; }
  done
done
if "$PY" -c "import ctypes; libc = ctypes.CDLL(None); libc.malloc.restype = ctypes.c_void_p
libc.memset(ctypes.c_void_p(libc.malloc(16)), 0, 32)" 2>/dev/null; then
  echo "sanitizers: a heap overflow went unnoticed: the ASan runtime is not active" >&2
  exit 1
fi
export NSPL_HYPOTHESIS_PROFILE=sanitizers
# SANITIZER_TESTS replaces the list (to check, say, that a finding in a test fails the step).
# --capture=sys: the sanitizers write their report to file descriptor 2, which pytest's
# default capture would hold, and lose when the runtime aborts the process.
# shellcheck disable=SC2086
"$PY" -m pytest -q -p no:cacheprovider --capture=sys ${SANITIZER_TESTS:-tests/test_ops.py tests/test_extremes.py \
  tests/test_properties.py tests/test_overlap.py tests/test_cpp_library.py tests/test_names.py tests/test_planning.py tests/test_bulk.py}
echo "== sanitizer tests done in $((SECONDS - start)) s"
