"""scripts/gpu_check.sh, as far as a machine without a GPU can run it: the script parses;
its dry run shows the preflight and plans every step with caps that add to at most the
deadline (420 s by default: the whole check, build included, in 7 minutes); a plan over its
deadline and a bad argument are refused; a step cut short by its cap still leaves
summary.txt and the logs; the summary names what the preflight missed and copies pytest's
final counts and skip reasons."""
import os
import re
import subprocess
import sys
import tarfile

import pytest

pytestmark = pytest.mark.repository
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "gpu_check.sh")


def run(*args, tmp_path, **env):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable, **env}
    return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True, env=env, timeout=300)


def test_script_parses():
    subprocess.run(["bash", "-n", SCRIPT], check=True)


def test_dry_run_shows_the_preflight_and_plans_every_step_within_the_deadline(tmp_path):
    result = run("--dry-run", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # The preflight runs first, even in a dry run: the device and what is missing.
    assert out.index("compute-sanitizer:") < out.index("== build")
    assert "cores:" in out and "date:" in out
    caps = {name: int(cap) for name, cap in re.findall(r"^== (\w+) \(cap (\d+) s\)", out, re.M)}
    assert list(caps)[:4] == ["build", "test", "bench_throughput", "bench_bulk_init"]
    assert "--sizes 2^28" in out and "--widths 512 --layers 48" in out
    assert "-k cuda and not opcheck and not compile" in out
    for path in ("tests/test_cuda.py", "tests/test_bulk.py", "tests/test_names.py", "tests/test_caffe_fillers.py"):
        assert path in out
    # memcheck is planned, or says why it cannot run here.
    assert "memcheck" in out
    (line,) = re.findall(r"add to (\d+) s, \+ (\d+) s to write the results = (\d+) s of a (\d+) s deadline", out)
    steps, reserve, total, deadline = map(int, line)
    assert deadline == 420 and total == steps + reserve <= deadline
    # Every planned step's cap counts, the preflight's and memcheck's too.
    assert sum(caps.values()) <= steps
    assert not os.listdir(tmp_path / "out")


def test_a_plan_over_its_deadline_is_refused(tmp_path):
    result = run("--dry-run", tmp_path=tmp_path, GPU_CHECK_SECONDS="300")
    assert result.returncode == 2
    assert "over the deadline of 300 s" in result.stderr
    # Fewer steps fit a shorter deadline.
    assert run("--dry-run", "test", tmp_path=tmp_path, GPU_CHECK_SECONDS="300").returncode == 0


def test_unknown_argument_is_refused(tmp_path):
    result = run("benchmarks", tmp_path=tmp_path)
    assert result.returncode == 2
    assert "unknown argument" in result.stderr


# A stand-in for the GPU machine's python3, so the steps' bookkeeping runs here in seconds:
# the preflight's checks report no GPU, and `-m pytest` prints what pytest prints at the end
# of a run with skips (or sleeps past its cap, PYTEST_SLEEP seconds).
FAKE_PYTHON = """#!/bin/bash
if [ "$1" = - ]; then
  cat >/dev/null
  echo "device: torch 0.0 (stand-in) cuda None"
  echo "missing: a GPU visible to torch 0.0 (stand-in)"
  exit 0
fi
if [ "$1" = -m ] && [ "$2" = pytest ]; then
  sleep "${PYTEST_SLEEP:-0}"
  echo "sssss.F                                                                  [100%]"
  echo "FAILED tests/test_cuda.py::test_contiguous_matches_cpu[nspl-float32] - AssertionError"
  echo "SKIPPED [5] tests/test_cuda.py:20: needs a CUDA device"
  echo "1 failed, 1 passed, 5 skipped, 3 deselected in 0.52s"
  exit 1
fi
exit 1
"""


def fake_python(tmp_path):
    path = tmp_path / "python3"
    path.write_text(FAKE_PYTHON)
    path.chmod(0o755)
    return str(path)


def test_a_step_cut_short_still_leaves_the_summary_and_logs(tmp_path):
    result = run("test", tmp_path=tmp_path, PYTHON=fake_python(tmp_path), PYTEST_SLEEP="30", GPU_CHECK_CAP_TEST="1")
    assert result.returncode == 1
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert re.search(r"^test: TIMED OUT after \d+ s \(cap 1 s\)$", summary, re.M), summary
    with tarfile.open(tmp_path / "out" / "gpu_check_logs.tar.gz") as logs:
        assert "./test.log" in logs.getnames()
    assert sorted(os.listdir(tmp_path / "out")) == ["gpu_check_logs.tar.gz", "summary.txt"]


def test_summary_names_what_is_missing_and_copies_pytest_counts(tmp_path):
    result = run("test", tmp_path=tmp_path, PYTHON=fake_python(tmp_path))
    assert result.returncode == 1  # the test step failed
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert "preflight: MISSING a GPU visible to torch 0.0 (stand-in)" in summary
    assert re.search(r"^test: FAILED \(exit 1\) after \d+ s$", summary, re.M), summary
    assert "SKIPPED [5] tests/test_cuda.py:20: needs a CUDA device" in summary
    assert "FAILED tests/test_cuda.py::test_contiguous_matches_cpu[nspl-float32] - AssertionError" in summary
    assert "1 failed, 1 passed, 5 skipped, 3 deselected in 0.52s" in summary
