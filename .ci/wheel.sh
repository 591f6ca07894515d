#!/usr/bin/env bash
# What a user installs: an sdist, a wheel built from it (so a file the sdist lacks fails the
# build), the wheel installed into a fresh virtual environment, and the package tests run
# against it from a copy of tests/ outside the source tree (tests marked 'repository' skip
# there with their reason). Reports the sizes of the compiled files.
#   TORCH_SPEC  the torch requirement of the fresh environment (default: the .venv's torch)
#   PYTHON      the interpreter that creates it (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
PY=$PWD/.venv/bin/python
TORCH_SPEC=${TORCH_SPEC:-torch==$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')}
work=$(mktemp -d "${TMPDIR:-/tmp}/nspl_wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT

# A fresh egg-info, so that the sdist lists what MANIFEST.in and setup.py say today.
"$PY" setup.py -q egg_info --egg-base "$work" sdist -d "$work/sdist" >/dev/null 2>&1
tar xzf "$work"/sdist/nspl_filler-*.tar.gz -C "$work"
(cd "$work"/nspl_filler-*/ && MAX_JOBS=${MAX_JOBS:-$(nproc)} "$PY" -m pip wheel -q . --no-build-isolation --no-deps -w "$work/wheel")
wheel=$(ls "$work"/wheel/nspl_filler-*.whl)
echo "== sdist and wheel built in $((SECONDS - start)) s: $(basename "$wheel") $(du -k "$wheel" | cut -f1) KiB"
unzip -l "$wheel" | awk '/\.so$/ {printf "   %-55s %7.2f MB\n", $4, $1 / 1e6}'

"${PYTHON:-python3}" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q "$TORCH_SPEC" "${wheel}[test]" matplotlib
echo "== fresh environment installed in $((SECONDS - start)) s"

cp -r tests "$work/tests"
cd "$work"
# The tests must import the installed package: nothing named nspl_filler sits in $work.
"$work/venv/bin/python" -c "import nspl_filler, sys; f = nspl_filler.__file__; sys.exit(0 if f.startswith('$work/venv/') else f'imported {f}')"
"$work/venv/bin/python" -m pytest -q -p no:cacheprovider tests
echo "== installed-package tests done in $((SECONDS - start)) s"
