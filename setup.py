"""Build of nspl_filler's compiled core: the C++ library nspl_filler/lib/libnspl_filler.so
(ops, kernels, C++ API) and the Python module nspl_filler._C that binds it.

The CUDA kernels are built when torch is a CUDA build, a CUDA toolkit is found, and a GPU
is visible or FORCE_CUDA=1 or TORCH_CUDA_ARCH_LIST is set; otherwise the build says why it
skipped them and builds the CPU extension. MAX_JOBS (parallel compile jobs) and DEBUG=1
(-O0 -g) are honoured; a release build carries no debug information (-g0). SANITIZE=1 builds
the core with AddressSanitizer and UndefinedBehaviorSanitizer (-O1 -g -fno-var-tracking, any
finding aborts), for .ci/sanitizers.sh, which builds it in a folder of its own. No
-march=native: SIMD code is chosen at run time.

Two variables split the build in two, for a library built on another machine against the
same torch (scripts/prebuild_cuda_library.sh, docs/gpu.md): NSPL_LIBRARY_ONLY=1 builds the
library alone; NSPL_PREBUILT_LIBRARY=path/libnspl_filler.so builds only _C, linked to that
file, which is installed as the package's library (its FINGERPRINT beside it says whether it
holds CUDA kernels).
"""
import glob
import json
import os
import shutil
import sys

import torch
from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))
DEBUG = os.environ.get("DEBUG", "0") == "1"
SANITIZE = os.environ.get("SANITIZE", "0") == "1"
# -fno-sanitize-recover: undefined behaviour aborts like a memory error does, so a test that
# reaches it fails instead of printing a line nobody reads.
SANITIZER_FLAGS = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]
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


def wheel_cuda_include_dirs(toolkit_include):
    """Header dirs that CUDA builds of torch ship in site-packages/nvidia/*/include (cusparse.h
    and friends, included by ATen/cuda/CUDAContext.h), only those holding a header that the
    toolkit's own include dir lacks. They go after the toolkit's dir (see extensions), so where
    both have a header (cuda_runtime.h, ...) the toolkit's, matching its nvcc, is the one used."""
    site = os.path.dirname(os.path.dirname(torch.__file__))
    dirs = []
    for directory in sorted(glob.glob(os.path.join(site, "nvidia", "*", "include"))):
        headers = glob.glob(os.path.join(directory, "**", "*.h"), recursive=True)
        if any(not os.path.exists(os.path.join(toolkit_include, os.path.relpath(h, directory))) for h in headers):
            dirs.append(directory)
    return dirs


def openmp_flags():
    """-fopenmp where torch's intra-op threads are OpenMP (Linux wheels). at::parallel_for is
    a header template that parallelises only when the including file is compiled with OpenMP
    (ATen/ParallelOpenMP.h tests _OPENMP); without the flag every loop of the extension runs
    on one thread. The extension then shares the libgomp.so.1 that torch has already loaded."""
    if sys.platform.startswith("linux") and torch.backends.openmp.is_available():
        return ["-fopenmp"]
    return []


# The compiled core is one shared library, nspl_filler/lib/libnspl_filler.so: the ops (their
# registration runs when it loads), the kernels and the C++ API of nspl_filler/include. C++
# programs link it (share/cmake/NsplFiller); the Python module nspl_filler._C is only the
# bindings and links the same file, so a process that uses both registers the ops once.
LIBRARY = "nspl_filler.lib.libnspl_filler"
LIBRARY_FILE = "libnspl_filler.so"
INCLUDE_DIR = os.path.join(ROOT, "nspl_filler", "include")
BINDINGS = os.path.join("csrc", "bindings.cpp")


def library_sources(build_cuda):
    """Every source of the compiled core but the Python bindings, CUDA kernels included when built."""
    sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")) + glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    sources.remove(BINDINGS)
    if build_cuda:
        sources += sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
    return sources


def without_torch_python(extension):
    """The extension without libtorch_python, which needs a Python interpreter in the process:
    the library serves C++ programs too."""
    extension.libraries = [name for name in extension.libraries if name != "torch_python"]
    return extension


PREBUILT_LIBRARY = os.environ.get("NSPL_PREBUILT_LIBRARY")
LIBRARY_ONLY = os.environ.get("NSPL_LIBRARY_ONLY", "0") == "1"


def extensions():
    all_extensions = both_extensions()
    if PREBUILT_LIBRARY:
        return [all_extensions[1]]
    if LIBRARY_ONLY:
        return [all_extensions[0]]
    return all_extensions


def prebuilt_has_cuda():
    fingerprint = os.path.join(os.path.dirname(os.path.abspath(PREBUILT_LIBRARY)), "FINGERPRINT")
    if not os.path.isfile(PREBUILT_LIBRARY) or not os.path.isfile(fingerprint):
        sys.exit(f"nspl_filler: NSPL_PREBUILT_LIBRARY={PREBUILT_LIBRARY}: the library and its FINGERPRINT "
                 "beside it are needed (scripts/prebuild_cuda_library.sh writes both)")
    with open(fingerprint) as f:
        return bool(json.load(f)["cuda_kernels"])


def both_extensions():
    """[the library, _C]."""
    if PREBUILT_LIBRARY:
        build_cuda, reason = prebuilt_has_cuda(), "the prebuilt library has no CUDA kernels"
    else:
        build_cuda, reason = cuda_decision()
    # Contraction of a*b+c into fma would differ between compilers and devices; the
    # stream is meant to give the same values everywhere.
    # Python's own compile flags carry -g, which more than doubles the files; -g0 after them
    # drops it from a release build.
    if SANITIZE:
        # -fno-var-tracking: the reports need the line tables and inlined frames that -g
        # keeps, not where each local variable lives; tracking those took three quarters of
        # the instrumented compile of the SIMD units (docs/development.md).
        cxx = ["-O1", "-g", "-fno-var-tracking"] + SANITIZER_FLAGS
    else:
        cxx = ["-O0", "-g"] if DEBUG else ["-O3", "-g0"]
    cxx += ["-ffp-contract=off"] + openmp_flags()
    cxx.append(f'-DNSPL_TORCH_VERSION="{torch.__version__}"')
    # The library exports its symbols (the C++ API, and what the bindings call); the module
    # keeps pybind11's hidden visibility. Its soname is what _C and C++ programs record, and
    # its RUNPATH finds torch's libraries beside it in site-packages when it is loaded alone.
    sanitizer_link = SANITIZER_FLAGS if SANITIZE else []
    library_link = sanitizer_link + openmp_flags() + [f"-Wl,-soname,{LIBRARY_FILE}", "-Wl,-rpath,$ORIGIN/../../torch/lib"]
    bindings = dict(
        include_dirs=[INCLUDE_DIR],
        libraries=["nspl_filler"],
        extra_compile_args={"cxx": cxx + ["-fvisibility=hidden"]},
        extra_link_args=sanitizer_link + ["-Wl,-rpath,$ORIGIN/lib"],
    )
    if not build_cuda:
        print(f"nspl_filler: building the CPU extension only: {reason}")
        return [
            without_torch_python(
                CppExtension(LIBRARY, library_sources(False), include_dirs=[INCLUDE_DIR],
                             extra_compile_args={"cxx": cxx}, extra_link_args=library_link)
            ),
            CppExtension("nspl_filler._C", [BINDINGS], **bindings),
        ]
    if not os.environ.get("TORCH_CUDA_ARCH_LIST"):
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_CUDA_ARCH_LIST
    print(f"nspl_filler: building CPU and CUDA extension for TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']}")
    toolkit_include = os.path.join(CUDA_HOME, "include")
    nvcc = ["-O0", "-g", "-lineinfo"] if DEBUG else ["-O3", "-lineinfo"]
    nvcc += ["--fmad=false", "-DNSPL_WITH_CUDA", f'-DNSPL_TORCH_VERSION="{torch.__version__}"']
    return [
        without_torch_python(
            CUDAExtension(
                LIBRARY,
                library_sources(True),
                # torch appends its own dirs and the toolkit's after these; the toolkit's dir is
                # named here too, so that it comes before the wheels' dirs.
                include_dirs=[INCLUDE_DIR, toolkit_include] + wheel_cuda_include_dirs(toolkit_include),
                define_macros=[("NSPL_WITH_CUDA", None)],
                extra_compile_args={"cxx": cxx, "nvcc": nvcc},
                extra_link_args=library_link,
            )
        ),
        CppExtension("nspl_filler._C", [BINDINGS], define_macros=[("NSPL_WITH_CUDA", None)], **bindings),
    ]


class BuildNsplFiller(BuildExtension):
    """torch's BuildExtension, building the library first, under its own name
    (libnspl_filler.so, not a Python module's name), and linking _C to it."""

    def get_ext_filename(self, ext_name):
        # Called with the full dotted name and with its last part alone.
        if ext_name in (LIBRARY, LIBRARY.rsplit(".", 1)[1]):
            return os.path.join(*ext_name.split(".")[:-1], LIBRARY_FILE)
        return super().get_ext_filename(ext_name)

    def build_extension(self, ext):
        if ext.name != LIBRARY:
            library_dir = os.path.dirname(self.get_ext_fullpath(LIBRARY))
            if PREBUILT_LIBRARY:
                # Installed where this build would have put its own, and linked from there.
                os.makedirs(library_dir, exist_ok=True)
                shutil.copy(PREBUILT_LIBRARY, os.path.join(library_dir, LIBRARY_FILE))
            if library_dir not in ext.library_dirs:
                ext.library_dirs.append(library_dir)
        super().build_extension(ext)

    def copy_extensions_to_source(self):
        # An in-place build copies the library into nspl_filler/lib, which a checkout lacks.
        package_dir = self.get_finalized_command("build_py").get_package_dir(LIBRARY.rsplit(".", 1)[0])
        os.makedirs(package_dir, exist_ok=True)
        super().copy_extensions_to_source()
        if PREBUILT_LIBRARY:
            shutil.copy(PREBUILT_LIBRARY, os.path.join(package_dir, LIBRARY_FILE))


setup(
    packages=find_packages(include=["nspl_filler", "nspl_filler.*"]),
    package_data={"nspl_filler": ["include/nspl_filler/*.h", "share/cmake/NsplFiller/*.cmake"]},
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildNsplFiller.with_options(use_ninja=True)},
)
