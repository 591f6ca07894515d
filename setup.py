"""Build of nspl_filler's compiled core, nspl_filler._C.

The CUDA kernels are built when torch is a CUDA build, a CUDA toolkit is found, and a GPU
is visible or FORCE_CUDA=1 or TORCH_CUDA_ARCH_LIST is set; otherwise the build says why it
skipped them and builds the CPU extension. MAX_JOBS (parallel compile jobs) and DEBUG=1
(-O0 -g) are honoured. No -march=native: SIMD code is chosen at run time.
"""
import glob
import os
import sys

import torch
from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))
DEBUG = os.environ.get("DEBUG", "0") == "1"
# Compute capabilities compiled when the caller names none: Ampere and Hopper, plus PTX
# so newer cards JIT from it.
DEFAULT_CUDA_ARCH_LIST = "8.0;9.0+PTX"


def cuda_decision():
    """(build_cuda, reason_if_not)."""
    if torch.version.cuda is None:
        return False, f"torch {torch.__version__} is a CPU-only build"
    if CUDA_HOME is None:
        return False, "no CUDA toolkit found (set CUDA_HOME)"
    if torch.cuda.is_available():
        return True, ""
    if os.environ.get("FORCE_CUDA", "0") == "1" or os.environ.get("TORCH_CUDA_ARCH_LIST"):
        return True, ""
    return False, "no GPU is visible and neither FORCE_CUDA=1 nor TORCH_CUDA_ARCH_LIST is set"


def wheel_cuda_include_dirs():
    """Headers that CUDA builds of torch ship in site-packages/nvidia/*/include (cusparse.h
    and friends, included by ATen/cuda/CUDAContext.h) when the toolkit lacks them."""
    site = os.path.dirname(os.path.dirname(torch.__file__))
    return sorted(glob.glob(os.path.join(site, "nvidia", "*", "include")))


def openmp_flags():
    """-fopenmp where torch's intra-op threads are OpenMP (Linux wheels). at::parallel_for is
    a header template that parallelises only when the including file is compiled with OpenMP
    (ATen/ParallelOpenMP.h tests _OPENMP); without the flag every loop of the extension runs
    on one thread. The extension then shares the libgomp.so.1 that torch has already loaded."""
    if sys.platform.startswith("linux") and torch.backends.openmp.is_available():
        return ["-fopenmp"]
    return []


def extensions():
    build_cuda, reason = cuda_decision()
    sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")) + glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    # Contraction of a*b+c into fma would differ between compilers and devices; the
    # stream is meant to give the same values everywhere.
    cxx = ["-O0", "-g"] if DEBUG else ["-O3"]
    cxx += ["-ffp-contract=off", "-fvisibility=hidden"] + openmp_flags()
    cxx.append(f'-DNSPL_TORCH_VERSION="{torch.__version__}"')
    if not build_cuda:
        print(f"nspl_filler: building the CPU extension only: {reason}")
        return [
            CppExtension("nspl_filler._C", sources, extra_compile_args={"cxx": cxx}, extra_link_args=openmp_flags())
        ]
    if not os.environ.get("TORCH_CUDA_ARCH_LIST"):
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_CUDA_ARCH_LIST
    print(f"nspl_filler: building CPU and CUDA extension for TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']}")
    sources += sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
    nvcc = ["-O0", "-g", "-lineinfo"] if DEBUG else ["-O3", "-lineinfo"]
    nvcc += ["--fmad=false", "-DNSPL_WITH_CUDA", f'-DNSPL_TORCH_VERSION="{torch.__version__}"']
    return [
        CUDAExtension(
            "nspl_filler._C",
            sources,
            include_dirs=wheel_cuda_include_dirs(),
            define_macros=[("NSPL_WITH_CUDA", None)],
            extra_compile_args={"cxx": cxx, "nvcc": nvcc},
            extra_link_args=openmp_flags(),
        )
    ]


setup(
    packages=find_packages(include=["nspl_filler", "nspl_filler.*"]),
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
