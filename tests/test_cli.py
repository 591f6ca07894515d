"""The command line under bad arguments and bad files: every one is a single line on stderr and
exit status 2, with nothing printed on stdout and nothing written, found before any work."""
import builtins
import json
import os
import subprocess
import sys

import pytest
import torch

from nspl_filler.__main__ import main

safetensors_torch = pytest.importorskip("safetensors.torch", reason="needs safetensors (pip install safetensors)")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A good checkpoint and a gallery of bad ones, by name."""
    root = tmp_path_factory.mktemp("cli")
    g = torch.Generator().manual_seed(0)
    good = {"a.weight": torch.randn(32, 32, generator=g), "b.weight": torch.randn(32, 32, generator=g)}
    torch.save(good, root / "good.pt")
    nan = dict(good, **{"b.weight": good["b.weight"].clone().fill_(float("nan"))})
    torch.save(nan, root / "nan.pt")
    (root / "text.pt").write_text("not a checkpoint\n")
    (root / "empty.pt").write_bytes(b"")
    torch.save({"steps": torch.tensor(3)}, root / "ints.pt")
    torch.save([1, 2, 3], root / "list.pt")
    safetensors_torch.save_file({"w": torch.randn(32, 32, generator=g).to(torch.float8_e4m3fn)}, root / "fp8.st")
    torch.save({"w": torch.empty(32, 32, device="meta")}, root / "meta.pt")
    (root / "empty_dir").mkdir()
    (root / "escape").mkdir()
    (root / "escape" / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": "/etc/hostname"}}))
    (root / "deep").mkdir()
    (root / "deep" / "model.safetensors.index.json").write_text('{"weight_map": ' + "[" * 50_000 + "]" * 50_000 + "}")
    (root / "out").mkdir()
    return root


BAD = {
    # argument values
    "max-layers negative": ["fit", "{good}", "--max-layers", "-1"],
    "max-layers zero": ["fit", "{good}", "--max-layers", "0"],
    "max-layers not a number": ["fit", "{good}", "--max-layers", "two"],
    "layer-min-size zero": ["fit", "{good}", "--layer-min-size", "0"],
    "quantile 1": ["fit", "{good}", "--quantile", "1"],
    "quantile negative": ["fit", "{good}", "--quantile", "-0.1"],
    "quantile nan": ["fit", "{good}", "--quantile", "nan"],
    "plot-panels zero": ["fit", "{good}", "--plot", "{out}/p.png", "--plot-panels", "0"],
    "unknown option": ["fit", "{good}", "--frobnicate"],
    "no checkpoint": ["fit"],
    "no command": [],
    "unknown command": ["train"],
    # outputs that cannot be written: found before the checkpoint is read or anything printed
    "json into a missing folder": ["fit", "{good}", "--json", "{root}/missing/fits.json"],
    "json onto a folder": ["fit", "{good}", "--json", "{out}"],
    "json onto the checkpoint": ["fit", "{good}", "--json", "{good}"],
    "plot into a missing folder": ["fit", "{good}", "--plot", "{root}/missing/p.png"],
    "plot in an unknown format": ["fit", "{good}", "--plot", "{out}/p.notaformat"],
    "json and plot the same file": ["fit", "{good}", "--json", "{out}/x.png", "--plot", "{out}/x.png"],
    # bad files
    "missing file": ["fit", "{root}/nothing.pt"],
    "text file": ["fit", "{root}/text.pt"],
    "empty file": ["fit", "{root}/empty.pt"],
    "integers only": ["fit", "{root}/ints.pt"],
    "not a mapping": ["fit", "{root}/list.pt"],
    "float8": ["fit", "{root}/fp8.st"],
    "meta tensors": ["fit", "{root}/meta.pt"],
    "a NaN layer": ["fit", "{root}/nan.pt", "--layer-min-size", "100"],
    "empty folder": ["fit", "{root}/empty_dir"],
    "index escaping its folder": ["fit", "{root}/escape"],
    "deeply nested index": ["fit", "{root}/deep"],
    # demo
    "demo numel zero": ["demo", "--numel", "0"],
    "demo numel negative": ["demo", "--numel", "-5"],
    "demo numel one": ["demo", "--numel", "1"],
    "demo repeat zero": ["demo", "--repeat", "0"],
    "demo unknown device": ["demo", "--device", "nowhere"],
    "demo meta device": ["demo", "--device", "meta"],
    "demo seed out of range": ["demo", "--seed", str(2**64)],
    "demo unknown option": ["demo", "--no-such-option"],
}


def listing(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*"))


@pytest.mark.parametrize("case", BAD)
def test_bad_arguments_and_files_are_one_line_and_exit_2(files, case, capsys):
    argv = [arg.format(root=files, good=files / "good.pt", out=files / "out") for arg in BAD[case]]
    before = listing(files)
    assert main(argv) == 2, case
    out, err = capsys.readouterr()
    assert out == "", f"{case}: printed before refusing: {out[:200]!r}"
    lines = err.splitlines()
    assert len(lines) == 1, f"{case}: {err!r}"
    assert lines[0].startswith("python -m nspl_filler") and ": error: " in lines[0], lines[0]
    assert "nspl_filler: nspl_filler" not in lines[0] and "error: nspl_filler:" not in lines[0], lines[0]
    assert listing(files) == before, f"{case}: wrote files"


def test_plot_without_matplotlib_is_refused_before_any_work(files, capsys, monkeypatch, tmp_path):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    for module in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, module)
    argv = ["fit", str(files / "good.pt"), "--json", str(tmp_path / "f.json"), "--plot", str(tmp_path / "f.png")]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and "matplotlib" in err
    assert list(tmp_path.iterdir()) == []


def test_the_json_file_is_written_whole_or_not_at_all(files, tmp_path, monkeypatch):
    import nspl_filler.__main__ as cli

    target = tmp_path / "fits.json"
    target.write_text("previous\n")
    real_fdopen = os.fdopen

    class FailsHalfway:
        """A file that writes the first half of what it is given, then fails (a full disk)."""

        def __init__(self, fd, mode):
            self.file = real_fdopen(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, text):
            self.file.write(text[: len(text) // 2])
            raise OSError("No space left on device")

    monkeypatch.setattr(cli.os, "fdopen", FailsHalfway)
    argv = ["fit", str(files / "good.pt"), "--json", str(target), "--layer-min-size", "100"]
    with pytest.raises(OSError, match="No space left"):
        main(argv)
    monkeypatch.undo()
    assert target.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["fits.json"]  # no temporary file left behind
    assert main(argv) == 0
    assert set(json.loads(target.read_text())["layers"]) == {"a.weight", "b.weight"}


def test_max_layers_fits_that_many(files, capsys):
    assert main(["fit", str(files / "good.pt"), "--max-layers", "1", "--layer-min-size", "100"]) == 0
    out = capsys.readouterr().out
    assert "a.weight" in out and "b.weight" not in out


def test_the_installed_entry_point_exits_2_in_one_line(files):
    run = subprocess.run([sys.executable, "-m", "nspl_filler", "fit", str(files / "good.pt"), "--max-layers", "-1"],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.splitlines() == ["python -m nspl_filler fit: error: argument --max-layers: must be >= 1, got -1"]
