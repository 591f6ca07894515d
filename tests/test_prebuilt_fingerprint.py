"""scripts/prebuilt_fingerprint.py: gpu_check.sh uses a prebuilt library only when it was built
from this checkout's sources, for this torch release and CUDA version, and for this GPU's
compute capability; anything else is refused with the reason."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys

from conftest import ROOT, skip_module_outside_repository

# The script under test is loaded as this module is collected.
skip_module_outside_repository()
SCRIPT = os.path.join(ROOT, "scripts", "prebuilt_fingerprint.py")
spec = importlib.util.spec_from_file_location("prebuilt_fingerprint", SCRIPT)
fingerprint = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fingerprint)

RECORDED = {"torch": "2.11.0", "cuda": "13.0", "sources": "abc", "arch": ["9.0"], "cuda_kernels": True}


def test_a_matching_fingerprint_is_accepted():
    assert fingerprint.mismatch(RECORDED, {"torch": "2.11.0", "cuda": "13.0", "sources": "abc"}, "9.0") is None
    # No GPU visible: the compute capability is not checked.
    assert fingerprint.mismatch(RECORDED, {"torch": "2.11.0", "cuda": "13.0", "sources": "abc"}, None) is None


def test_each_difference_is_refused_with_its_reason():
    current = {"torch": "2.11.0", "cuda": "13.0", "sources": "abc"}
    assert fingerprint.mismatch(RECORDED, dict(current, torch="2.12.0"), "9.0") == (
        "built for torch 2.11.0, this is 2.12.0")
    assert fingerprint.mismatch(RECORDED, dict(current, cuda="12.8"), "9.0") == (
        "built for torch's CUDA 13.0, this is 12.8")
    assert fingerprint.mismatch(RECORDED, dict(current, sources="abd"), "9.0") == (
        "built from other sources than this checkout's")
    assert fingerprint.mismatch(RECORDED, current, "8.0") == (
        "built for compute capabilities ['9.0'], this GPU is 8.0")


def test_the_sources_digest_follows_every_source_file(tmp_path):
    for rel in ("csrc/cuda/fill_cuda.cu", "csrc/fill.h", "nspl_filler/include/nspl_filler/stream.h", "setup.py"):
        os.makedirs(tmp_path / os.path.dirname(rel), exist_ok=True)
        shutil.copy(os.path.join(ROOT, rel), tmp_path / rel)
    before = fingerprint.sources_digest(str(tmp_path))
    assert before == fingerprint.sources_digest(str(tmp_path))
    for rel in ("csrc/cuda/fill_cuda.cu", "nspl_filler/include/nspl_filler/stream.h"):
        path = tmp_path / rel
        text = path.read_text()
        path.write_text(text + "\n")
        assert fingerprint.sources_digest(str(tmp_path)) != before, rel
        path.write_text(text)
    assert fingerprint.sources_digest(str(tmp_path)) == before
    (tmp_path / "csrc" / "cuda" / "new_unit.cu").write_text("")
    assert fingerprint.sources_digest(str(tmp_path)) != before


def test_write_then_check_round_trip(tmp_path):
    path = tmp_path / "FINGERPRINT"
    subprocess.run([sys.executable, SCRIPT, "--write", str(path), "--arch", "8.0;9.0+PTX"], check=True)
    recorded = json.loads(path.read_text())
    assert recorded["arch"] == ["8.0", "9.0"] and recorded["cuda_kernels"] is True
    check = subprocess.run([sys.executable, SCRIPT, "--check", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    path.write_text(json.dumps(dict(recorded, sources="0" * 64)))
    check = subprocess.run([sys.executable, SCRIPT, "--check", str(path)], capture_output=True, text=True)
    assert check.returncode == 1 and "other sources" in check.stdout
