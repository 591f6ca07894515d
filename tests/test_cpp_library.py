"""The C++ library as a C++ program gets it: the CMake package that `python -m nspl_filler
--cmake-prefix-path` points at, the example programs of examples/cpp built with CMake and
run, and their values against Python's for the same seeds, bit for bit; and the library
loaded once per process, whoever loads it."""
import ctypes
import os
import shutil
import subprocess
import sys

import pytest
import torch

import nspl_filler
import nspl_filler.cpp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "cpp")


def cmake_prefix_path():
    out = subprocess.run([sys.executable, "-m", "nspl_filler", "--cmake-prefix-path"], check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


def test_cmake_prefix_path_names_both_packages():
    ours, torchs = cmake_prefix_path().split(";")
    assert os.path.isfile(os.path.join(ours, "NsplFiller", "NsplFillerConfig.cmake"))
    assert os.path.isfile(os.path.join(torchs, "Torch", "TorchConfig.cmake"))
    assert ours == nspl_filler.cmake_prefix_path and torchs == torch.utils.cmake_prefix_path


def test_the_package_holds_headers_and_library():
    for header in ("filler.h", "init.h", "fans.h", "stream.h"):
        assert os.path.isfile(os.path.join(nspl_filler.cpp.include_path, "nspl_filler", header))
    assert os.path.isfile(nspl_filler.cpp.library_path)


def test_the_module_and_the_library_are_one_copy_of_the_ops():
    # The extension module links the library rather than holding the ops itself: the library
    # is mapped into this process, and loading it again (as torch.ops.load_library or a C++
    # plugin would) finds it loaded, so the ops are not registered a second time.
    with open("/proc/self/maps") as maps:
        mapped = {line.split()[-1] for line in maps if line.rstrip().endswith(".so")}
    assert os.path.realpath(nspl_filler.cpp.library_path) in {os.path.realpath(p) for p in mapped}
    before = nspl_filler.fill_(torch.empty(8, 8), seed=3)
    torch.ops.load_library(nspl_filler.cpp.library_path)
    ctypes.CDLL(nspl_filler.cpp.library_path)
    assert torch.equal(nspl_filler.fill_(torch.empty(8, 8), seed=3), before)


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    """examples/cpp configured and built with CMake, as its CMakeLists.txt says."""
    missing = [tool for tool in ("cmake", "c++") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"building the C++ example needs {' and '.join(missing)} on PATH")
    build = tmp_path_factory.mktemp("example")
    env = dict(os.environ, CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 2))
    for command in (["cmake", "-S", EXAMPLE, "-B", str(build), f"-DCMAKE_PREFIX_PATH={cmake_prefix_path()}",
                     "-DCMAKE_BUILD_TYPE=Release"],
                    ["cmake", "--build", str(build)]):
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return build


def read_values(path):
    """{name: float64 tensor} from init_model's values file: a name, then hexadecimal floats."""
    values = {}
    with open(path) as f:
        for line in f:
            name, *numbers = line.split()
            values[name] = torch.tensor([float.fromhex(x) for x in numbers], dtype=torch.float64)
    return values


def python_values():
    """What init_model.cpp fills, done from Python."""
    def filler(**param):
        return nspl_filler.get_filler(nspl_filler.FillerParameter(**param))

    weights = filler(type="nspl", seed=0)
    conv1 = weights.fill(torch.empty(8, 3, 5, 5))
    conv2 = weights.fill(torch.empty(16, 8, 3, 3))
    g = torch.Generator().manual_seed(9)
    return {
        "conv1.weight": conv1,
        "conv1.bias": filler(type="constant", value=0.1).fill(torch.empty(8)),
        "conv2.weight": conv2,
        "conv2.bias": filler(type="constant", value=0.1).fill(torch.empty(16)),
        "up.weight": filler(type="bilinear").fill(torch.empty(16, 1, 4, 4)),
        "fc.weight": filler(type="gaussian", std=0.01, sparse=3, seed=2).fill(torch.empty(10, 64)),
        "fc.bias": filler(type="uniform", min=-0.1, max=0.1, seed=3).fill(torch.empty(10)),
        "positive_unitball": filler(type="positive_unitball", seed=4).fill(torch.empty(4, 6)),
        "msra": filler(type="msra", variance_norm="average", seed=5).fill(torch.empty(6, 4, 3, 3, dtype=torch.float64)),
        "symmetric_power_law": filler(type="symmetric_power_law", alpha=2.0, min=0.01, max=1.0, seed=6).fill(
            torch.empty(32, 16, dtype=torch.bfloat16)),
        "nspl_": nspl_filler.fill_(torch.empty(12, 5), "fan_out", alpha=2.0, seed=7),
        "normal_": _op("normal_", torch.empty(7, 3, dtype=torch.float16), 0.5, seed=8, offset=100),
        "symmetric_uniform_": _op("symmetric_uniform_", torch.empty(9), 2.0, generator=g),
        "trunc_normal": filler(type="trunc_normal", std=0.02, min=-0.04, max=0.04, seed=10).fill(
            torch.empty(5, 8, dtype=torch.float16)),
        "trunc_normal_": _op("trunc_normal_", torch.empty(6, 5, dtype=torch.float64), 1.0, 0.5, 2.5, 5.0, seed=11,
                             offset=3),
    }


def _op(name, tensor, *args, **kwargs):
    getattr(torch.ops.nspl_filler, name)(tensor, *args, **kwargs)
    return tensor


def same_bits(got_float64, want):
    """The C++ program's values (exact in float64) are `want`'s, bit for bit, signed zeros included."""
    got = got_float64.to(want.dtype).reshape(want.shape)
    ints = {2: torch.int16, 4: torch.int32, 8: torch.int64}[want.element_size()]
    return torch.equal(got.view(ints), want.contiguous().view(ints))


@pytest.mark.repository
def test_init_model_gives_pythons_values(examples, tmp_path):
    values_file = tmp_path / "values.txt"
    result = subprocess.run([str(examples / "init_model"), str(values_file)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-4000:]
    got = read_values(values_file)
    want = python_values()
    assert sorted(got) == sorted(want)
    for name, tensor in want.items():
        assert same_bits(got[name], tensor), name
    # One summary line per tensor on stdout.
    assert [line.split()[0] for line in result.stdout.splitlines()] == list(got)


@pytest.mark.repository
def test_a_program_that_only_uses_the_dispatcher_gets_the_ops(examples):
    # dispatch.cpp names no symbol of the library; the package's target keeps it linked,
    # so loading the program registers the ops.
    result = subprocess.run([str(examples / "dispatch")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-4000:]
    got = torch.tensor([float.fromhex(x) for x in result.stdout.split()], dtype=torch.float64)
    assert same_bits(got, _op("normal_", torch.empty(8), 0.02, seed=11))


def readme_blocks(language):
    with open(os.path.join(ROOT, "docs", "cpp.md")) as f:
        section = f.read()
    blocks = section.split(f"```{language}\n")[1:]
    return [block[:block.index("```")] for block in blocks]


@pytest.mark.repository
def test_the_readmes_cpp_excerpts_are_the_tested_example():
    # docs/cpp.md shows essentials of examples/cpp; each line of them is in the example, which
    # the tests above build and run.
    with open(os.path.join(EXAMPLE, "CMakeLists.txt")) as f:
        cmake = {line.strip() for line in f}
    with open(os.path.join(EXAMPLE, "init_model.cpp")) as f:
        cpp = {line.strip() for line in f}
    (cmake_block,) = readme_blocks("cmake")
    (cpp_block,) = readme_blocks("cpp")
    for block, lines in ((cmake_block, cmake), (cpp_block, cpp)):
        for line in block.splitlines():
            code = line.split("//")[0].strip()  # the page may comment a line
            assert not code or code in lines, line
    (commands,) = [b for b in readme_blocks("bash") if "cmake -S" in b]
    assert "--cmake-prefix-path" in commands and "build/example/init_model" in commands
