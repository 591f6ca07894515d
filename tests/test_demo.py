"""The main job, `python -m nspl_filler demo`, on a small timed tensor: it runs through the
command line, reproduces the model and reports each layer's std near its target."""
import re

from nspl_filler.__main__ import main


def test_demo_runs_and_reproduces(capsys):
    assert main(["demo", "--numel", "4096", "--repeat", "1", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "same seed reproduces every weight bit for bit: True" in out
    deviation = float(re.search(r"sqrt\(2 / fan_in\): ([0-9.]+)%", out).group(1))
    # The smallest layer has 864 weights: the std's sampling error is a few per cent.
    assert deviation < 10.0
    assert "nspl_filler.fill_" in out and "M samples/s" in out


def test_demo_rejects_unknown_options(capsys):
    assert main(["demo", "--no-such-option"]) == 2
    assert "--no-such-option" in capsys.readouterr().err
