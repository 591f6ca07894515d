"""Parameters that are not plain layer weights: frozen tables (Marian's sinusoids), experts
stored as 3-D tensors and their routers (Mixtral, Qwen2-MoE), T5's relative position bias and
its own variance recipe, parametrized and wrapped weights (weight_norm old and new,
orthogonal, spectral_norm, FSDP1's flat parameter, nn.DataParallel), and the smaller cases
of scale="keep", explicit stds, lazy modules and meta-built models."""
import math
import os
import re
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize

import nspl_filler as nf
from nspl_filler import empty_weights, init_module_, init_plan, materialize_
from nspl_filler.layouts import EXPERTS, Layout, register_layout

SQRT2 = math.sqrt(2.0)


def transformers_or_skip():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers = pytest.importorskip("transformers", reason="the model tests need transformers")
    transformers.logging.set_verbosity_error()
    return transformers


def quiet_plan(model, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {r.name: r for r in init_plan(model, **kwargs)}


# ---------------------------------------------------------------- 1. frozen parameters

def marian():
    transformers = transformers_or_skip()
    config = transformers.MarianConfig(vocab_size=97, d_model=32, encoder_layers=1, decoder_layers=1,
                                       encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=48,
                                       decoder_ffn_dim=48, max_position_embeddings=32, pad_token_id=0,
                                       decoder_start_token_id=0)
    return transformers.MarianMTModel(config)


def test_frozen_sinusoidal_tables_are_kept_and_stay_real_in_empty_weights():
    torch.manual_seed(0)
    model = marian()
    table = model.model.encoder.embed_positions.weight
    assert not table.requires_grad
    sinusoids = table.detach().clone()
    assert sinusoids[1, 0] == pytest.approx(math.sin(1.0))  # the model's own sin table
    plan = quiet_plan(model)
    assert plan["model.encoder.embed_positions.weight"].rule == "keep (frozen)"
    assert plan["model.decoder.embed_positions.weight"].rule == "keep (frozen)"
    init_module_(model, seed=0)
    assert torch.equal(model.model.encoder.embed_positions.weight, sinusoids)

    torch.manual_seed(0)
    with empty_weights():
        deferred = marian()
    assert not deferred.model.encoder.embed_positions.weight.is_meta
    assert deferred.model.encoder.layers[0].fc1.weight.is_meta
    materialize_(deferred, "cpu", seed=0)
    assert torch.equal(deferred.model.encoder.embed_positions.weight, sinusoids)
    assert torch.equal(deferred.model.encoder.layers[0].fc1.weight, model.model.encoder.layers[0].fc1.weight)


def test_whisper_table_frozen_after_creation_is_kept_and_named_in_the_meta_flow():
    transformers = transformers_or_skip()
    config = transformers.WhisperConfig(vocab_size=97, d_model=32, encoder_layers=1, decoder_layers=1,
                                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=48,
                                        decoder_ffn_dim=48, num_mel_bins=8, max_source_positions=16,
                                        max_target_positions=16, pad_token_id=0, decoder_start_token_id=0)
    model = transformers.WhisperModel(config)
    sinusoids = model.encoder.embed_positions.weight.detach().clone()
    assert quiet_plan(model)["encoder.embed_positions.weight"].rule == "keep (frozen)"
    init_module_(model, seed=0)
    assert torch.equal(model.encoder.embed_positions.weight, sinusoids)
    with empty_weights():  # Whisper freezes the table after creating it: it was made on meta
        deferred = transformers.WhisperModel(config)
    with pytest.raises(ValueError, match=r"encoder\.embed_positions\.weight \(keep \(frozen\)\).*frozen only after"):
        materialize_(deferred, "cpu", seed=0)


def test_a_rule_still_writes_a_frozen_parameter():
    net = nn.Sequential(nn.Embedding.from_pretrained(torch.ones(5, 4), freeze=True), nn.Linear(4, 4))
    init_module_(net, seed=0)
    assert torch.equal(net[0].weight, torch.ones(5, 4))
    init_module_(net, seed=0, rules={"0.weight": {"init": "nspl", "gain": 1.0}})
    assert not torch.equal(net[0].weight, torch.ones(5, 4))
    assert not net[0].weight.requires_grad


# ---------------------------------------------------------------- 2. Mixture-of-Experts

def mixtral():
    transformers = transformers_or_skip()
    config = transformers.MixtralConfig(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, num_local_experts=4,
                                        num_experts_per_tok=2, max_position_embeddings=32)
    return transformers.MixtralForCausalLM(config)


def qwen2_moe():
    transformers = transformers_or_skip()
    config = transformers.Qwen2MoeConfig(vocab_size=97, hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
                                         shared_expert_intermediate_size=48, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, num_experts=4,
                                         num_experts_per_tok=2, max_position_embeddings=32)
    return transformers.Qwen2MoeForCausalLM(config)


@pytest.mark.parametrize("build, inner", [(mixtral, 96), (qwen2_moe, 32)])
def test_experts_get_the_fans_of_one_expert(build, inner):
    torch.manual_seed(0)
    model = build()
    plan = quiet_plan(model)
    up, down = plan["model.layers.0.mlp.experts.gate_up_proj"], plan["model.layers.0.mlp.experts.down_proj"]
    assert up.shape == (4, 2 * inner, 64) and down.shape == (4, 64, inner)
    assert (up.role, up.rule, up.fan, up.std) == ("layer", "nspl", 64, pytest.approx(SQRT2 / 8))
    assert (down.role, down.fan, down.std) == ("layer", inner, pytest.approx(SQRT2 / math.sqrt(inner)))
    router = plan["model.layers.0.mlp.gate.weight"]
    assert (router.role, router.rule, router.fan) == ("layer", "nspl", 64)
    init_module_(model, seed=3)
    experts = model.model.layers[0].mlp.experts
    for e in range(4):  # every expert at the std of its own fan_in (torch's fans would give 64x less)
        assert float(experts.gate_up_proj[e].detach().std()) == pytest.approx(SQRT2 / 8, rel=0.08)
        assert float(experts.down_proj[e].detach().std()) == pytest.approx(SQRT2 / math.sqrt(inner), rel=0.08)


def test_experts_and_routers_are_built_on_meta_and_the_meta_flow_equals_direct_construction():
    torch.manual_seed(0)
    direct = init_module_(mixtral(), seed=5)
    torch.manual_seed(0)
    with empty_weights():
        deferred = mixtral()
    block = deferred.model.layers[0].mlp
    assert block.experts.gate_up_proj.is_meta and block.experts.down_proj.is_meta and block.gate.weight.is_meta
    assert not deferred.model.layers[0].input_layernorm.weight.is_meta
    materialize_(deferred, "cpu", seed=5)
    a, b = direct.state_dict(), deferred.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


class ToyExperts(nn.Module):
    """Experts as transformers stores them, without transformers: (E, out, in) per projection."""

    def __init__(self, experts=3, hidden=16, inner=40, transposed=False):
        super().__init__()
        shape_up = (experts, hidden, inner) if transposed else (experts, inner, hidden)
        shape_down = (experts, inner, hidden) if transposed else (experts, hidden, inner)
        self.up = nn.Parameter(torch.zeros(shape_up))
        self.down = nn.Parameter(torch.zeros(shape_down))
        self.bias = nn.Parameter(torch.zeros(experts, hidden))
        if transposed:
            self.is_transposed = True


class Block(nn.Module):
    def __init__(self, experts: nn.Module):
        super().__init__()
        self.experts = experts


def test_experts_are_recognised_by_class_name_or_attribute_and_their_2d_biases_kept():
    class Bank(nn.Module):  # neither name ends in "Experts": recognised as `experts` of its parent
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(3, 40, 16))

    for model, name in ((ToyExperts(), "up"), (Block(Bank()), "experts.w"), (Block(ToyExperts()), "experts.up")):
        plan = quiet_plan(model)
        assert (plan[name].role, plan[name].fan) == ("layer", 16), name
    plan = quiet_plan(ToyExperts())
    assert (plan["down"].fan, plan["bias"].rule) == (40, "keep")
    transposed = quiet_plan(ToyExperts(transposed=True))  # (E, in, out), as GPT-OSS says with is_transposed
    assert (transposed["up"].fan, transposed["down"].fan) == (16, 40)
    assert quiet_plan(ToyExperts(), mode="fan_out")["up"].fan == 40
    with empty_weights():
        deferred = Block(ToyExperts())
    assert deferred.experts.up.is_meta and not deferred.experts.bias.is_meta


def test_module_list_experts_and_a_router_module():
    class Router(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(4, 16))

    class Moe(nn.Module):
        def __init__(self):
            super().__init__()
            self.gate = Router()
            self.experts = nn.ModuleList(nn.Linear(16, 40) for _ in range(4))

    plan = quiet_plan(Moe())
    assert (plan["gate.weight"].role, plan["gate.weight"].fan) == ("layer", 16)
    assert all(plan[f"experts.{e}.weight"].fan == 16 for e in range(4))


def test_layouts_take_batch_dims():
    layout = register_layout(ToyExperts, in_dim=1, out_dim=2, batch_dims=0, params=("up", "down"))
    try:
        assert layout.batch_dims == (0,)
        assert layout.fans((3, 16, 40)) == (16, 40)
        plan = quiet_plan(ToyExperts(transposed=True))
        assert (plan["up"].fan, plan["down"].fan, plan["bias"].rule) == (16, 40, "keep")
    finally:
        del nf.layouts._LAYOUTS[ToyExperts]
    assert Layout(in_dim=3, out_dim=2, batch_dims=(0, 1)).fans((2, 5, 7, 11)) == (11, 7)
    assert EXPERTS.fans((8, 6, 4)) == (4, 6)
    with pytest.raises(ValueError, match="batch_dims"):
        register_layout(ToyExperts, in_dim=1, out_dim=2, batch_dims=1)
    with pytest.raises(TypeError, match="batch_dims"):
        register_layout(ToyExperts, batch_dims="0")
    with pytest.raises(ValueError, match="same dim twice"):
        Layout(in_dim=1, out_dim=2, batch_dims=(-2,)).fans((2, 3, 4))


# ---------------------------------------------------------------- 3. T5

def t5():
    transformers = transformers_or_skip()
    config = transformers.T5Config(vocab_size=97, d_model=64, d_kv=16, d_ff=96, num_layers=2, num_heads=4,
                                   relative_attention_num_buckets=8)
    return transformers.T5ForConditionalGeneration(config)


def test_t5_relative_attention_bias_is_kept_and_the_plan_warns_where_its_recipe_departs():
    torch.manual_seed(0)
    model = t5()
    bias = model.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight
    before = bias.detach().clone()
    with pytest.warns(UserWarning, match=r"own std more than 3x away.*SelfAttention\.q\.weight") as caught:
        records = {r.name: r for r in init_plan(model)}
    message = str(next(w.message for w in caught if "own std" in str(w.message)))
    assert "k.weight" not in message.split("(")[1]  # k, v, o are within 3x of the plan
    q = records["encoder.block.0.layer.0.SelfAttention.q.weight"]
    # T5 draws q with std d_model^-1/2 · d_kv^-1/2 = 1/32; the plan's is sqrt(2/64).
    assert q.own_std == pytest.approx(1 / 32, rel=0.05) and q.std == pytest.approx(SQRT2 / 8)
    assert records["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"].rule == "keep"
    init_module_(model, seed=0)
    assert torch.equal(bias, before)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        init_plan(model, scale="keep")  # nothing departs from its own std


def test_t5_in_the_meta_flow_names_the_bias_table_it_cannot_keep():
    with empty_weights():
        model = t5()
    with pytest.raises(ValueError, match=r"relative_attention_bias\.weight \(keep\).*T5's relative_attention_bias"):
        materialize_(model, "cpu", seed=0)
    rule = {"*relative_attention_bias.weight": {"init": "normal", "std": 0.125}}
    materialize_(model, "cpu", seed=0, rules=rule)
    table = model.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight
    assert float(table.detach().std()) == pytest.approx(0.125, rel=0.25)


# ---------------------------------------------------------------- 4. parametrized and wrapped weights

def test_old_style_weight_norm_keeps_its_magnitudes():
    lstm = nn.LSTM(8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        nn.utils.weight_norm(lstm, "weight_hh_l0")
    g = lstm.weight_hh_l0_g.detach().clone()
    plan = quiet_plan(lstm)
    assert (plan["weight_hh_l0_g"].role, plan["weight_hh_l0_g"].rule) == ("norm", "keep")
    assert (plan["weight_hh_l0_v"].role, plan["weight_hh_l0_v"].fan) == ("layer", 8)
    v = lstm.weight_hh_l0_v.detach().clone()
    init_module_(lstm, seed=0)
    assert torch.equal(lstm.weight_hh_l0_g, g) and bool((g > 0).all())
    assert not torch.equal(lstm.weight_hh_l0_v, v)


def bare_and_parametrized(parametrization):
    torch.manual_seed(0)
    bare = nn.Sequential(nn.Linear(6, 5), nn.Linear(5, 4))
    torch.manual_seed(0)
    wrapped = nn.Sequential(parametrization(nn.Linear(6, 5)), nn.Linear(5, 4))
    return bare, wrapped


@pytest.mark.parametrize("stream", ["sequential", "name"])
def test_new_style_weight_norm_gets_the_weight_a_bare_linear_gets(stream):
    bare, wrapped = bare_and_parametrized(parametrizations.weight_norm)
    plan = quiet_plan(wrapped)
    row = plan["0.weight"]
    assert row.aliases == ("0.parametrizations.weight.original0", "0.parametrizations.weight.original1")
    assert (row.role, row.rule, row.fan) == ("layer", "nspl (through right_inverse)", 6)
    init_module_(bare, seed=4, stream=stream)
    init_module_(wrapped, seed=4, stream=stream)
    assert torch.allclose(wrapped[0].weight, bare[0].weight, rtol=1e-6, atol=1e-7)
    assert torch.equal(wrapped[1].weight, bare[1].weight)
    magnitudes = wrapped[0].parametrizations.weight.original0
    assert torch.allclose(magnitudes.flatten(), bare[0].weight.norm(dim=1), rtol=1e-6)


def test_spectral_norm_and_orthogonal_are_filled_through_right_inverse():
    bare, wrapped = bare_and_parametrized(parametrizations.spectral_norm)
    init_module_(bare, seed=1)
    init_module_(wrapped, seed=1)
    assert torch.equal(wrapped[0].parametrizations.weight.original, bare[0].weight)  # right_inverse: itself
    _, orthogonal = bare_and_parametrized(lambda m: parametrizations.orthogonal(m))
    before = orthogonal[0].weight.detach().clone()
    init_module_(orthogonal, seed=1)
    weight = orthogonal[0].weight.detach()
    assert not torch.allclose(weight, before)
    assert torch.allclose(weight @ weight.T, torch.eye(5), atol=1e-5)  # the map keeps it orthogonal


class Doubled(nn.Module):
    def forward(self, x):
        return 2 * x


def test_a_parametrization_without_right_inverse_is_kept_with_a_warning():
    net = nn.Sequential(nn.Linear(4, 3))
    parametrize.register_parametrization(net[0], "weight", Doubled())
    original = net[0].parametrizations.weight.original.detach().clone()
    with pytest.warns(UserWarning, match="without right_inverse"):
        init_module_(net, seed=0)
    assert torch.equal(net[0].parametrizations.weight.original, original)
    assert quiet_plan(net)["0.weight"].rule == "keep (parametrization without right_inverse)"
    with pytest.raises(ValueError, match=r"'0\.weight'.*without right_inverse \(Doubled\)"):
        init_module_(net, seed=0, rules={"0.weight": "nspl"})


def test_data_parallel_names_are_those_of_the_bare_model():
    torch.manual_seed(0)
    bare = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    wrapped = nn.DataParallel(nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2)))
    assert nf.canonical_name("module.0.weight", wrapped) == "0.weight"
    init_module_(bare, seed=7, stream="name")
    init_module_(wrapped, seed=7, stream="name")
    assert torch.equal(wrapped.module[0].weight, bare[0].weight)
    assert torch.equal(wrapped.module[1].weight, bare[1].weight)


FSDP1_SCRIPT = textwrap.dedent("""
    import sys, torch, torch.distributed as dist
    from torch import nn
    dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    import nspl_filler
    model = FSDP(nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2)), use_orig_params=False,
                 device_id=torch.device("cpu"))
    before = [p.detach().clone() for p in model.parameters()]
    try:
        nspl_filler.init_module_(model, seed=0)
    except ValueError as error:
        assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
        print("REFUSED:", error)
    dist.destroy_process_group()
""")


def test_fsdp1_flat_parameters_are_refused(tmp_path):
    done = subprocess.run([sys.executable, "-c", FSDP1_SCRIPT, str(tmp_path / "rendezvous")], capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"REFUSED: .*'_fsdp_wrapped_module\._flat_param'.*use_orig_params=False.*use_orig_params=True",
                     done.stdout), done.stdout


# ---------------------------------------------------------------- 5. smaller cases

def test_scale_keep_keeps_constants_float32_cannot_hold_and_measures_huge_stds():
    net = nn.Linear(64, 32)
    with torch.no_grad():
        net.weight.fill_(0.3)
    assert float(torch.std(net.weight, correction=0)) > 0  # float32 sees noise in a constant
    init_module_(net, seed=0, scale="keep")
    assert bool((net.weight == torch.tensor(0.3)).all())
    assert quiet_plan(net, scale="keep")["weight"].rule == "keep (std 0)"
    with torch.no_grad():
        net.weight.copy_(torch.where(torch.rand(32, 64, generator=torch.Generator().manual_seed(0)) < 0.5,
                                     -1e37, 1e37))
    row = quiet_plan(net, scale="keep")["weight"]
    assert row.std == pytest.approx(1e37, rel=1e-3)
    init_module_(net, seed=0, scale="keep")
    assert bool(torch.isfinite(net.weight).all())
    assert float(net.weight.double().std()) == pytest.approx(1e37, rel=0.2)


def test_an_explicit_std_or_bound_needs_no_fans():
    net = nn.Linear(8, 4)
    init_module_(net, seed=0, rules={"bias": {"init": "normal", "std": 0.5}})
    plan = quiet_plan(net, rules={"bias": {"init": "uniform", "bound": 0.5}})
    assert (plan["bias"].fan, plan["bias"].std) == (None, pytest.approx(0.5 / math.sqrt(3)))
    init_module_(net, seed=0, rules={"bias": {"init": "uniform", "bound": 0.5}})
    assert float(net.bias.abs().max()) <= 0.5
    with pytest.raises(ValueError, match="has no fans"):
        init_module_(net, seed=0, rules={"bias": {"init": "normal"}})


def test_a_lazy_module_names_its_parameter():
    net = nn.Sequential(nn.Linear(4, 4), nn.LazyLinear(3))
    with pytest.raises(ValueError, match=r"parameter '1\.weight' is uninitialised .*forward pass"):
        init_module_(net, seed=0)
    net(torch.zeros(2, 4))
    init_module_(net, seed=0)


def test_a_model_built_on_meta_is_told_what_to_do():
    with torch.device("meta"):
        net = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    with pytest.raises(ValueError, match=r"built on the meta device \(torch.device\('meta'\)\), build it in "
                                         r"nspl_filler.empty_weights\(\) instead"):
        materialize_(net, "cpu", seed=0)


def test_a_wholly_frozen_model_warns_that_nothing_is_written():
    net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)).requires_grad_(False)
    before = [p.detach().clone() for p in net.parameters()]
    with pytest.warns(UserWarning, match="is frozen"):
        init_module_(net, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    net.requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        init_module_(net, seed=0)
    assert not torch.equal(before[0], net[0].weight)


# ---------------------------------------------------------------- the documentation's claims

from conftest import ROOT  # noqa: E402


def test_learned_position_tables_stored_as_embeddings_get_the_embedding_rule():
    transformers = transformers_or_skip()
    config = transformers.GPT2Config(vocab_size=97, n_embd=32, n_layer=1, n_head=2, n_positions=16)
    plan = quiet_plan(transformers.GPT2LMHeadModel(config))
    assert (plan["transformer.wpe.weight"].role, plan["transformer.wpe.weight"].fan) == ("embedding", 32)


@pytest.mark.repository
def test_the_logits_rows_in_the_docs_are_the_committed_measurements():
    import json

    with open(os.path.join(ROOT, "benchmarks", "results", "model_defaults_cpu_2026-12-03.json")) as f:
        rows = json.load(f)["rows"]
    columns = ["own init", "previous default", "fan (default)", "fan_out", "keep"]
    for page in ("docs/models.md",):
        with open(os.path.join(ROOT, page)) as f:
            text = f.read()
        for model, prefix in (("T5", "| T5, t5-small size"), ("Mixtral", "| Mixtral, 768 wide")):
            (measured,) = [row for name, row in rows.items() if name.startswith(model)]
            (line,) = [line for line in text.splitlines() if line.startswith(prefix)]
            cells = [float(c) for c in line.strip("|").split("|")[1:]]
            assert cells == [pytest.approx(measured[c], rel=6e-3) for c in columns], (page, line)
    t5 = next(row for name, row in rows.items() if name.startswith("T5"))
    assert round(t5["own init"] / t5["fan (default)"]) == 23  # the docs' "23x smaller"
