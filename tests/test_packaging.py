"""What a user installs: the sdist holds every file a build of the compiled core needs (its
sources and headers, CUDA's included, the public headers and the CMake package), and a
release build carries no debug information. (.ci/wheel.sh builds a wheel from the sdist,
installs it in a fresh environment and runs these tests against it.)"""
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest

import nspl_filler
import nspl_filler.cpp

from conftest import ROOT


def source_files(top):
    return sorted(os.path.relpath(os.path.join(folder, name), ROOT)
                  for folder, _, names in os.walk(os.path.join(ROOT, top)) for name in names
                  if not name.endswith((".o", ".so", ".pyc")))


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    out = tmp_path_factory.mktemp("sdist")
    # A fresh egg-info: setuptools would otherwise reuse the file list of an earlier sdist.
    egg_base = tmp_path_factory.mktemp("egg_info")
    subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(egg_base), "sdist", "-d", str(out)],
                   cwd=ROOT, check=True, capture_output=True, timeout=600)
    (archive,) = out.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    prefix = names[0].split("/")[0] + "/"
    return {name[len(prefix):] for name in names if name.startswith(prefix)}


@pytest.mark.repository
def test_the_sdist_holds_every_source_and_header_of_the_core(sdist):
    wanted = source_files("csrc") + source_files(os.path.join("nspl_filler", "include"))
    wanted += source_files(os.path.join("nspl_filler", "share"))
    wanted += ["setup.py", "pyproject.toml", "MANIFEST.in"]
    missing = [name for name in wanted if name not in sdist]
    assert not missing, f"a build from the sdist would lack {missing}"
    assert not [name for name in sdist if name.endswith((".so", ".o"))], "built files in the sdist"


@pytest.mark.repository
def test_every_quoted_include_of_the_sources_is_in_the_sdist(sdist):
    # A header that a source includes but the sdist lacks breaks only a build from the sdist.
    for name in source_files("csrc"):
        with open(os.path.join(ROOT, name)) as f:
            for header in re.findall(r'^\s*#\s*include\s+"([^"]+)"', f.read(), flags=re.M):
                candidates = [os.path.normpath(os.path.join(os.path.dirname(name), header)),
                              os.path.normpath(os.path.join("csrc", header)),
                              os.path.normpath(os.path.join("nspl_filler", "include", header))]
                assert any(c in sdist for c in candidates), f"{name} includes {header!r}, not in the sdist"


@pytest.mark.skipif(os.environ.get("DEBUG") == "1", reason="DEBUG=1 builds carry debug information by design")
@pytest.mark.skipif(shutil.which("readelf") is None, reason="needs readelf (binutils)")
@pytest.mark.parametrize("library", ["module", "library"])
def test_a_release_build_carries_no_debug_information(library):
    path = nspl_filler._C.__file__ if library == "module" else nspl_filler.cpp.library_path
    sections = subprocess.run(["readelf", "-S", "-W", path], capture_output=True, text=True, check=True).stdout
    debug = sorted(set(re.findall(r"\.debug_\w+", sections)))
    assert not debug, f"{path} carries {debug} ({os.path.getsize(path) / 1e6:.1f} MB)"
