"""scripts/gpu_check.sh, as far as a machine without a GPU can run it: the script parses,
its dry run plans every step within the deadline, and a bad argument is refused."""
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.repository
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "gpu_check.sh")


def run(*args, tmp_path):
    env = dict(os.environ, OUT=str(tmp_path / "out"), PYTHON=sys.executable)
    return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True, env=env, timeout=120)


def test_script_parses():
    subprocess.run(["bash", "-n", SCRIPT], check=True)


def test_dry_run_plans_every_step_and_runs_nothing(tmp_path):
    result = run("--dry-run", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    for step in ("== build", "== test", "== bench_throughput", "== bench_bulk_init"):
        assert step in result.stdout
    assert "--sizes 2^28" in result.stdout and "--widths 512 --layers 48" in result.stdout
    # memcheck is planned, or says why it cannot run here.
    assert "memcheck" in result.stdout
    assert not os.listdir(tmp_path / "out")


def test_unknown_argument_is_refused(tmp_path):
    result = run("benchmarks", tmp_path=tmp_path)
    assert result.returncode == 2
    assert "unknown argument" in result.stderr
