"""The CUDA kernels' index arithmetic, checked on the CPU: csrc/cuda/index_map.h holds the
walk of each kernel (contiguous, strided, bulk) and the magic-number dividers they use, with
no torch or CUDA types; tests/index_map_model.cpp runs those walks for every thread of a
launch over thousands of random shapes, strides, storage offsets, shards and launch sizes
and checks that each element is written once, with the lane and block of its global index.
This is what can be verified of the kernels' element mapping without a GPU."""
import os
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.repository
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_index_map_model(tmp_path):
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("needs a C++ compiler")
    binary = tmp_path / "index_map_model"
    subprocess.run([compiler, "-std=c++17", "-O2", "-Wall", "-Werror", "-I", os.path.join(ROOT, "csrc"),
                    os.path.join(ROOT, "tests", "index_map_model.cpp"), "-o", str(binary)], check=True)
    result = subprocess.run([str(binary), "4000"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip().endswith("5000 layouts ok")
