"""benchmarks/throughput.py runs end to end on a tiny size and reports what the tables of
docs/benchmarks.md are made of (a smoke test: seconds, not a benchmark)."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.repository
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_throughput_reports_every_alpha_and_the_bandwidth_share(tmp_path):
    out = tmp_path / "t.json"
    subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "throughput.py"), "--sizes", "2^12",
                    "--repeat", "1", "--dtype", "float32", "--alphas", "1,2", "--json", str(out)],
                   check=True, capture_output=True, timeout=600)
    report = json.loads(out.read_text())
    rows = {row["method"]: row for row in report["table"]}
    for name in ("nspl_filler.fill_ (alpha=1)", "nspl_filler.fill_ (alpha=2)", "Tensor.uniform_", "Tensor.fill_(1.0)"):
        assert rows[name]["samples_per_s"] > 0, name
    assert rows["Tensor.fill_(1.0)"]["vs_fill"] == 1.0 and rows["Tensor.uniform_"]["vs_uniform"] == 1.0
    assert rows["trunc_normal_"]["vs_trunc_normal"] == 1.0 and rows["nspl_filler.trunc_normal_"]["samples_per_s"] > 0
    assert {row["call"] for row in report["per_call"]} >= {"nspl_filler.fill_(t, seed=1)", "kaiming_uniform_(t)"}
    assert report["nspl_cpu_kernels"] in ("scalar", "avx2", "avx512")
