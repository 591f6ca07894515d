"""Misuse gets a clear TypeError or ValueError before anything is written: one type rule for
seeds and numbers at every entry point, lists that are not lists, layouts with no kernel,
the end of the stream, and the fitting tool's bad inputs."""
import copy
import json
import math
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import nspl_filler
from nspl_filler import Generator, fill_, fill_many_, init_module_, init_plan, symmetric_power_law_
from nspl_filler.__main__ import main


# ------------------------------------------------------------------ fill_many_ and init_module_ misuse
def test_fill_many_of_a_tensor_is_a_type_error():
    w = torch.zeros(8, 16)
    with pytest.raises(TypeError, match="sequence of tensors, got a Tensor"):
        fill_many_(w, seed=1)
    assert w.eq(0).all()


def test_layouts_without_a_kernel_are_the_type_error_of_fill_everywhere():
    sparse = torch.zeros(4, 4).to_sparse()
    with pytest.raises(TypeError, match="strided layout"):
        fill_(sparse, seed=1)
    with pytest.raises(TypeError, match="strided layout"):
        fill_many_([torch.zeros(2, 2), sparse], seed=1)
    nested = torch.nested.nested_tensor([torch.zeros(2, 3), torch.zeros(4, 3)])
    filler = nspl_filler.get_filler(nspl_filler.FillerParameter(seed=1))
    with pytest.raises(TypeError, match="strided layout .* got nested"):
        filler.fill(nested)
    assert filler.offset == 0


def test_zero_element_parameters_are_skipped_and_reported():
    layer = nn.Linear(0, 5)
    report = init_plan(layer)
    assert [(r.name, r.rule) for r in report] == [("weight", "keep (no elements)"), ("bias", "keep")]
    assert init_module_(layer, seed=0, rules={"bias": "zeros"}) is layer
    assert layer.bias.eq(0).all()
    model = nn.Sequential(nn.Linear(3, 0), nn.Linear(0, 4))
    init_module_(model, seed=0, rules={"*.bias": 0.5})
    assert model[1].bias.eq(0.5).all()
    assert [r.rule for r in init_plan(model)][:3] == ["keep (no elements)", "keep", "keep (no elements)"]


# ------------------------------------------------------------------ one type rule for seeds and numbers
def test_numpy_integer_seeds_are_accepted_everywhere():
    want = fill_(torch.empty(6, 5), seed=5)
    assert torch.equal(fill_(torch.empty(6, 5), seed=np.int64(5)), want)
    assert torch.equal(fill_(torch.empty(6, 5), seed=np.uint8(5)), want)
    assert torch.equal(fill_many_([torch.empty(6, 5)], seed=np.int32(5))[0], want)
    assert torch.equal(fill_(torch.empty(6, 5), generator=Generator(np.int16(5))), want)
    assert Generator(0).set_state((np.int64(5), np.uint32(0))).get_state() == (5, 0)
    assert torch.equal(init_module_(nn.Linear(5, 6), seed=np.int64(5)).weight.detach(), want)
    top = fill_(torch.empty(6, 5), seed=2**64 - 1)
    assert torch.equal(fill_(torch.empty(6, 5), seed=np.uint64(2**64 - 1)), top)
    assert torch.equal(fill_(torch.empty(6, 5), seed=-1), top)


@pytest.mark.parametrize("bad", [True, np.True_, 1.0, np.float64(2.0), "3"])
def test_bool_and_non_integer_seeds_are_refused_everywhere(bad):
    for call in [
        lambda: fill_(torch.empty(2, 2), seed=bad),
        lambda: fill_many_([torch.empty(2, 2)], seed=bad),
        lambda: init_module_(nn.Linear(2, 2), seed=bad),
        lambda: Generator(bad),
        lambda: nspl_filler.FillerParameter(seed=bad),
    ]:
        with pytest.raises(TypeError, match="seed"):
            call()


def test_filler_parameter_takes_the_seed_range_of_fill():
    for seed in (2**63, 2**64 - 1, -(2**63), -1):
        param = nspl_filler.FillerParameter(type="symmetric_power_law", alpha=2.0, min=0.1, max=1.0, seed=seed)
        assert param.seed == seed % 2**64
        got = nspl_filler.get_filler(param).fill(torch.empty(40))
        assert torch.equal(got, symmetric_power_law_(torch.empty(40), 2.0, 0.1, 1.0, seed=seed))
    for seed in (2**64, -(2**63) - 1):
        with pytest.raises(ValueError, match="seed"):
            fill_(torch.empty(2, 2), seed=seed)
        with pytest.raises(ValueError, match="seed"):
            nspl_filler.FillerParameter(seed=seed)
        param = nspl_filler.FillerParameter()
        with pytest.raises(ValueError, match="seed"):
            param.seed = seed
    param = nspl_filler.FillerParameter(seed=np.int64(3))
    param.seed = None
    assert param.seed is None


@pytest.mark.parametrize("huge", [10**400, -(10**400)])
def test_ints_beyond_the_float_range_are_value_errors(huge):
    t = torch.full((4, 4), 7.0)
    for call, name in [
        (lambda: fill_(t, alpha=huge, seed=1), "alpha"),
        (lambda: fill_(t, ratio=huge, seed=1), "ratio"),
        (lambda: fill_(t, gain=huge, seed=1), "gain"),
        (lambda: symmetric_power_law_(t, 1.0, huge, 1.0, seed=1), "low"),
        (lambda: fill_many_([t], alpha=huge, seed=1), "alpha"),
        (lambda: fill_many_([t], gain=[huge], seed=1), "gain"),
        (lambda: init_module_(nn.Linear(4, 4), alpha=huge, seed=1), "alpha"),
        (lambda: nspl_filler.second_moment(huge, 10.0), "alpha"),
    ]:
        with pytest.raises(ValueError, match=name):
            call()
    assert t.eq(7.0).all()


def test_seed_and_generator_together_is_an_error_even_with_nothing_to_fill():
    for call in [
        lambda: fill_many_([], seed=1, generator=Generator(1)),
        lambda: init_module_(nn.ReLU(), seed=1, generator=Generator(1)),
        lambda: fill_(torch.empty(0, 3), seed=1, generator=Generator(1)),
    ]:
        with pytest.raises(ValueError, match="not both"):
            call()
    with pytest.raises(TypeError, match="seed"):
        fill_many_([], seed="1")
    with pytest.raises(TypeError, match="generator"):
        fill_many_([], generator=3)


# ------------------------------------------------------------------ the end of the stream
def test_generator_offsets_round_trip_up_to_the_end_of_the_stream():
    g = Generator(1, offset=2**63 - 10)
    t = fill_(torch.empty(9, 4), generator=g)  # 9 blocks: ends at the last block a fill may use
    assert g.offset == 2**63 - 1
    assert g.set_state(g.get_state()).get_state() == (1, 2**63 - 1)
    assert torch.equal(t, fill_(torch.empty(9, 4), generator=Generator(1, offset=2**63 - 10)))
    fill_(torch.empty(0, 4), generator=g)  # nothing to fill: fine at the end
    before = torch.full((1, 4), 3.0)
    for call in [
        lambda: fill_(before, generator=g),
        lambda: fill_many_([before], generator=g),
        lambda: fill_(torch.empty(1, 4, device="meta"), generator=g),
        lambda: init_module_(nn.Linear(4, 1), generator=g),
    ]:
        with pytest.raises(ValueError, match="end of the stream"):
            call()
        assert g.get_state() == (1, 2**63 - 1)
    assert before.eq(3.0).all()
    with pytest.raises(ValueError, match="offset"):
        Generator(1, offset=2**63)
    with pytest.raises(TypeError, match="offset"):
        Generator(1, offset=True)


def test_a_filler_stops_at_the_end_of_the_stream():
    filler = nspl_filler.get_filler(nspl_filler.FillerParameter(type="msra", seed=1))
    huge = torch.empty(2**61, 1, dtype=torch.float16, device="meta")  # 2^59 blocks, nothing allocated
    for _ in range(15):
        filler.fill(huge)
    assert filler.offset == 15 * 2**59  # 2^59 short of 2^63
    with pytest.raises(ValueError, match="end of the stream"):
        filler.fill(huge)
    assert filler.offset == 15 * 2**59


# ------------------------------------------------------------------ Generator copies
def test_generator_copies_and_pickles_keep_the_state_and_get_their_own_lock():
    g = Generator(11, offset=5)
    fill_(torch.empty(8, 8), generator=g)
    for other in (copy.deepcopy(g), copy.copy(g), pickle.loads(pickle.dumps(g))):
        assert other.get_state() == g.get_state()
        assert other._lock is not g._lock
        with other._lock:  # a lock of its own: g's is free
            assert g._lock.acquire(blocking=False)
            g._lock.release()
        a = fill_(torch.empty(3, 3), generator=other)
        assert torch.equal(a, fill_(torch.empty(3, 3), generator=Generator(*g.get_state())))
        assert other.offset == g.offset + 3


# ------------------------------------------------------------------ fit and its command line
def power_law(n, alpha, seed):
    gen = torch.Generator().manual_seed(seed)
    return symmetric_power_law_(torch.empty(n, dtype=torch.float64), alpha, 1.0, 100.0, generator=gen).abs()


def test_fit_of_empty_or_zero_data_says_why():
    with pytest.raises(ValueError, match="empty"):
        nspl_filler.fit(torch.empty(0, 10))
    with pytest.raises(ValueError, match="all zero"):
        nspl_filler.fit(torch.zeros(30, 30))


@pytest.mark.parametrize("exponent", [-1010, -600, 600, 1000])
def test_fit_does_not_depend_on_the_units(exponent):
    # From near the float64 minimum (2^-1010 · [1, 100]) to near its maximum: a power of two
    # changes the units of low, high and sigma and nothing else.
    w = power_law(3000, 2.0, seed=1)
    base = nspl_filler.fit(w)
    scaled = nspl_filler.fit(torch.from_numpy(np.ldexp(w.numpy(), exponent)))
    assert (scaled.alpha, scaled.ratio, scaled.ks, scaled.lr, scaled.n_tail, scaled.loglog_slope) == (
        base.alpha, base.ratio, base.ks, base.lr, base.n_tail, base.loglog_slope)
    assert scaled.low == math.ldexp(base.low, exponent) and scaled.high == math.ldexp(base.high, exponent)
    assert scaled.normal_sigma == pytest.approx(math.ldexp(base.normal_sigma, exponent), rel=1e-12)
    y = 2.0 * base.low
    assert scaled.pdf(torch.tensor(math.ldexp(y, exponent), dtype=torch.float64)).item() == pytest.approx(
        math.ldexp(base.pdf(torch.tensor(y, dtype=torch.float64)).item(), -exponent), rel=1e-9)


def test_fit_of_subnormal_data_works_at_their_precision():
    # 2^-1060 · [1, 100] is subnormal: 14 to 21 significant bits are left, enough for a fit.
    w = power_law(3000, 2.0, seed=1)
    scaled = nspl_filler.fit(torch.from_numpy(np.ldexp(w.numpy(), -1060)))
    assert abs(scaled.alpha - nspl_filler.fit(w).alpha) < 0.01


def test_fit_of_magnitudes_beyond_the_float64_range_says_why():
    w = torch.tensor([1e-300, 1e300] * 200, dtype=torch.float64) * torch.linspace(1, 2, 400, dtype=torch.float64)
    with pytest.raises(ValueError, match="float64 range"):
        nspl_filler.fit(w)


def cli_error(capsys, argv):
    status = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    return status, lines


def test_fit_command_reports_bad_files_in_one_line(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    ints = tmp_path / "ints.pt"
    torch.save({"step": torch.tensor(3), "ids": torch.arange(1000).reshape(10, 100)}, ints)
    for path, words in [
        (tmp_path / "missing.pt", "no such file"),
        (tmp_path, "directory"),
        (text, "torch.load"),
        (ints, "no floating-point tensors"),
    ]:
        status, lines = cli_error(capsys, ["fit", str(path)])
        assert status == 2
        assert len(lines) == 1 and words in lines[0] and str(path) in lines[0], lines


def test_fit_command_has_no_traceback_for_a_text_file(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    done = subprocess.run([sys.executable, "-m", "nspl_filler", "fit", str(text)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_fit_command_json_has_null_where_there_is_no_number(tmp_path, capsys):
    path, out = tmp_path / "small.pt", tmp_path / "fit.json"
    torch.save({"tiny.weight": torch.randn(4, 4)}, path)  # too few values to fit
    assert main(["fit", str(path), "--json", str(out)]) == 0
    capsys.readouterr()
    text = out.read_text()
    assert "NaN" not in text and "Infinity" not in text
    payload = json.loads(text)
    assert payload["layers"] == {} and payload["median_alpha"] is None and payload["median_ratio"] is None


def test_a_bool_param_is_refused_even_after_its_integer_twin_was_accepted():
    fill_(torch.empty(4, 3), nonlinearity="leaky_relu", param=1, seed=0)
    t = torch.full((4, 3), 7.0)
    with pytest.raises(ValueError, match="negative_slope True not a valid number"):
        fill_(t, nonlinearity="leaky_relu", param=True, seed=0)
    assert t.eq(7.0).all()


# ------------------------------------------------------------------ one message style
def style_of(call):
    """The message of the TypeError or ValueError that call() raises."""
    with pytest.raises((TypeError, ValueError)) as raised:
        call()
    return str(raised.value)


@pytest.mark.parametrize("case", [
    "rule with a bad fan", "rule with a bad gain", "bad seed", "bad alpha", "fit of nothing", "fit of NaN",
    "fit of a layer with NaN", "bad quantile", "bad min_tail", "not a tensor", "fill_many_ of a tensor",
])
def test_every_message_carries_the_prefix_once(case):
    nan = torch.full((8, 8), math.nan)
    call = {
        "rule with a bad fan": lambda: init_module_(nn.Linear(3, 4), seed=0, rules={"weight": dict(fan_in=-1)}),
        "rule with a bad gain": lambda: init_module_(nn.Linear(3, 4), seed=0, rules={"weight": dict(gain=math.inf)}),
        "bad seed": lambda: fill_(torch.empty(2, 2), seed=2**64),
        "bad alpha": lambda: fill_(torch.empty(2, 2), seed=0, alpha=math.nan),
        "fit of nothing": lambda: nspl_filler.fit(torch.zeros(0)),
        "fit of NaN": lambda: nspl_filler.fit(nan),
        "fit of a layer with NaN": lambda: nspl_filler.fit({"w": torch.full((32, 32), math.nan)}),
        "bad quantile": lambda: nspl_filler.fit(torch.randn(100), quantiles=(1.5,)),
        "bad min_tail": lambda: nspl_filler.fit(torch.randn(100), min_tail=1),
        "not a tensor": lambda: fill_([1.0], seed=0),
        "fill_many_ of a tensor": lambda: fill_many_(torch.zeros(2, 2), seed=0),
    }[case]
    message = style_of(call)
    assert message.startswith("nspl_filler: ") and message.count("nspl_filler:") == 1, message
    assert "\n" not in message
