"""Every ```python block of README.md and docs/*.md runs, so the docs cannot drift from the API.

The blocks of one page run in order in one namespace (a later block may use what an earlier
one made), in a scratch directory. A block whose first line is
``# Not run by the tests: <reason>`` is skipped with that reason; the convention is stated
in docs/README.md and kept to blocks that cannot run here (signatures, a GPU).
"""
import glob
import os
import re
import textwrap

import pytest
import torch

from conftest import ROOT, skip_module_outside_repository

# The pages are read as this module is collected.
skip_module_outside_repository()
pytestmark = pytest.mark.repository
PAGES = sorted([os.path.join(ROOT, "README.md")] + glob.glob(os.path.join(ROOT, "docs", "*.md")))
NOT_RUN = re.compile(r"#\s*Not run by the tests:\s*(\S.*)")
FENCE = re.compile(r"^([ \t]*)```python[ \t]*\n(.*?)^\1```[ \t]*$", re.S | re.M)
#: Optional packages some pages use; where one is not installed that page skips, saying so.
OPTIONAL = {"transformers", "matplotlib", "safetensors"}


def python_blocks(path):
    """(line number, code) of each ```python block of a markdown file."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [(text.count("\n", 0, m.start()) + 2, textwrap.dedent(m.group(2))) for m in FENCE.finditer(text)]


def skip_reason(code):
    first = code.lstrip("\n").split("\n", 1)[0]
    match = NOT_RUN.fullmatch(first.strip())
    return match.group(1) if match else None


def test_the_pages_have_python_blocks():
    # The extraction finds the blocks a reader sees, so a fence the regex misses cannot
    # silently drop an example from the tests.
    for path in PAGES:
        with open(path, encoding="utf-8") as f:
            opened = sum(1 for line in f if line.strip() == "```python")
        assert opened == len(python_blocks(path)), path
    assert len(python_blocks(os.path.join(ROOT, "README.md"))) >= 2
    runnable = [code for path in PAGES for _, code in python_blocks(path) if skip_reason(code) is None]
    assert len(runnable) >= 8


def test_a_marked_block_is_recognised():
    assert skip_reason("# Not run by the tests: needs a GPU\nx = 1\n") == "needs a GPU"
    assert skip_reason("x = 1\n# Not run by the tests: late\n") is None
    assert skip_reason("# not run\nx = 1\n") is None


@pytest.mark.parametrize("path", [p for p in PAGES if python_blocks(p)], ids=lambda p: os.path.relpath(p, ROOT))
def test_page_examples_run(path, tmp_path, monkeypatch, capsys):
    blocks = python_blocks(path)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    namespace = {"__name__": "docs_example"}
    skipped = []
    for line, code in blocks:
        reason = skip_reason(code)
        if reason is not None:
            skipped.append(f"line {line}: {reason}")
            continue
        try:
            exec(compile(code, f"{os.path.relpath(path, ROOT)}:{line}", "exec"), namespace)
        except ModuleNotFoundError as e:
            if e.name and e.name.split(".")[0] in OPTIONAL:
                pytest.skip(f"{os.path.relpath(path, ROOT)}:{line} needs {e.name}, not installed")
            raise
    capsys.readouterr()
    if skipped and len(skipped) == len(blocks):
        pytest.skip("; ".join(skipped))


def test_the_readme_is_a_front_door_with_the_two_commands():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    assert len(text.splitlines()) <= 250
    assert "bash scripts/setup_env.sh && .venv/bin/python -m nspl_filler demo\n" in text
    assert "bash scripts/setup_env.sh && .venv/bin/python -m pytest -q tests\n" in text


def spec_sections():
    with open(os.path.join(ROOT, "docs", "spec.md"), encoding="utf-8") as f:
        return set(re.findall(r"^## §(\d+b?) ", f.read(), re.M))


def test_every_citation_of_the_contract_names_a_section_of_docs_spec_md():
    assert spec_sections() == {"1", "2", "2b", "3", "4", "4b", "5", "6"}
    cited = set()
    for folder in ("nspl_filler", "csrc", "tests", "docs", "scripts", "tools", "benchmarks", "examples", ".ci"):
        for path in glob.glob(os.path.join(ROOT, folder, "**", "*"), recursive=True):
            if not os.path.isfile(path) or path.endswith((".so", ".png", ".pyc", ".json")):
                continue
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
            where = os.path.relpath(path, ROOT)
            assert not re.search(r"\bSPEC\s*§", text), f"{where} cites a contract outside the repository"
            for group in re.findall(r"docs/spec\.md\s+((?:§\d+b?(?:\s*(?:,|-|and)\s*)?)+)", text):
                cited.update((where, section) for section in re.findall(r"§(\d+b?)", group))
    assert len(cited) > 40
    assert {section for _, section in cited} <= spec_sections(), sorted(cited)
