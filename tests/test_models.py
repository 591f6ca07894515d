"""Models nobody here wrote, built from tiny configs (nothing is downloaded): transformers BERT,
GPT-2 and Llama; timm resnet18, vit_tiny and convnext_atto where timm imports (it needs a
torchvision that loads with this torch, which the test environment does not install).

The meta flow reproduces direct construction; GPT-2's Conv1D gets its true fans; only layer
weights and embeddings get NSPL by default; scale "keep" keeps each model's own recipe."""
import math
import os

import pytest
import torch
from torch import nn

import nspl_filler
from nspl_filler import empty_weights, init_module_, init_plan, materialize_

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers", reason="the model tests need transformers (pip install transformers)")
transformers.logging.set_verbosity_error()

SQRT2 = math.sqrt(2.0)
VOCAB = 97


def bert():
    config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=96, max_position_embeddings=32)
    return transformers.BertForMaskedLM(config)


def gpt2():
    config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=128, n_layer=2, n_head=4, n_positions=32,
                                     bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(config)


def llama(tied=True):
    config = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, intermediate_size=96, max_position_embeddings=32,
                                      tie_word_embeddings=tied, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return transformers.LlamaForCausalLM(config)


MODELS = {"bert": bert, "gpt2": gpt2, "llama": llama}
#: init_module_'s defaults before parameters had roles, as rules (docs/models.md says so too).
OLD_DEFAULT_RULES = [
    (lambda name, p, m: p.dim() >= 2, "nspl"),
    ("*bias", "zeros"),
    (lambda name, p, m: nspl_filler.layouts.is_norm(m), "ones"),
]
IDS = torch.randint(1, VOCAB, (2, 24), generator=torch.Generator().manual_seed(0))


def logits(model):
    model.eval()
    with torch.no_grad():
        return model(input_ids=IDS).logits


def built(name, seed=0):
    torch.manual_seed(seed)
    return MODELS[name]()


@pytest.mark.parametrize("name", MODELS)
def test_the_meta_flow_equals_direct_construction(name):
    direct = init_module_(built(name), seed=11)
    torch.manual_seed(0)
    with empty_weights():
        deferred = MODELS[name]()
    assert any(p.is_meta for p in deferred.parameters())
    assert not any(b.is_meta for b in deferred.buffers())  # position_ids, inv_freq: real
    materialize_(deferred, "cpu", seed=11)
    a, b = direct.state_dict(), deferred.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert torch.equal(logits(direct), logits(deferred))
    ties = {"bert": ("cls.predictions.decoder.weight", "bert.embeddings.word_embeddings.weight"),
            "gpt2": ("lm_head.weight", "transformer.wte.weight"),
            "llama": ("lm_head.weight", "model.embed_tokens.weight")}[name]
    assert deferred.get_parameter(ties[0]) is deferred.get_parameter(ties[1])


@pytest.mark.parametrize("name", ["bert", "llama"])
def test_a_model_built_on_meta_is_refused_for_its_buffers(name):
    with torch.device("meta"):
        model = MODELS[name]()
    rules = [(lambda n, p, m: p.dim() == 1 and not n.endswith("bias"), "ones"), ("*bias", "zeros")]
    buffer = {"bert": "bert.embeddings.position_ids", "llama": "model.rotary_emb.inv_freq"}[name]
    with pytest.raises(ValueError, match=rf"buffers \[.*'{buffer}'.*\] are on the meta device"):
        materialize_(model, "cpu", seed=0, rules=rules)
    assert all(p.is_meta for p in model.parameters())


def test_gpt2_conv1d_gets_its_true_fans():
    model = built("gpt2")
    by_name = {r.name: r for r in init_plan(model)}
    c_attn, c_proj = by_name["transformer.h.0.attn.c_attn.weight"], by_name["transformer.h.0.mlp.c_proj.weight"]
    assert (c_attn.shape, c_attn.fan, c_attn.std) == ((128, 384), 128, SQRT2 / math.sqrt(128))  # 0.125
    assert nspl_filler.compute_fans((128, 384))[0] == 384  # the shape's (torch's) fan_in: std 0.072
    assert (c_proj.shape, c_proj.fan, c_proj.std) == ((512, 128), 512, SQRT2 / math.sqrt(512))  # 0.0625
    init_module_(model, seed=0)
    layer = model.transformer.h[1]
    assert layer.attn.c_attn.weight.std().item() == pytest.approx(0.125, rel=0.05)
    assert layer.mlp.c_proj.weight.std().item() == pytest.approx(0.0625, rel=0.05)


@pytest.mark.parametrize("name", MODELS)
def test_only_layer_weights_and_embeddings_get_nspl(name):
    model = built(name)
    def values():
        return {n: t.detach().clone() for n, t in [*model.named_parameters(), *model.named_buffers()]}

    before = values()
    records = init_plan(model)
    for r in records:
        module = model.get_submodule(r.name.rpartition(".")[0])
        if r.role == "layer":
            assert r.rule == "nspl" and r.shape[-1] > 1, r.name
        elif r.role == "embedding":
            assert isinstance(module, nn.Embedding) and r.rule == "nspl(gain=1.0, mode='fan_in')", r.name
        else:
            assert r.rule == "keep", r.name
    roles = {r.name: r.role for r in records}
    norm = {"bert": "bert.encoder.layer.0.attention.output.LayerNorm.weight", "gpt2": "transformer.h.0.ln_1.weight",
            "llama": "model.layers.0.input_layernorm.weight"}[name]
    assert roles[norm] == "norm"
    init_module_(model, seed=0)
    after = values()
    kept = {r.name for r in records if r.rule == "keep"} | {n for n, _ in model.named_buffers()}
    for key in kept:
        assert torch.equal(before[key], after[key]), key


@pytest.mark.filterwarnings("ignore:.*'\\*bias'\\] match no parameter")  # Llama has no biases
@pytest.mark.parametrize("name", MODELS)
def test_logits_under_each_default(name):
    """With a final norm before the head, logits have std ~ the head's gain: 1 for a head
    tied to the embedding (NSPL's embedding rule), sqrt(2) for a Linear head (the ReLU
    gain) and under the previous defaults (the ReLU gain everywhere); scale "keep" gives the
    model's own."""
    own = built(name)
    own_std = logits(own).std().item()
    kept = init_module_(built(name), seed=0, scale="keep")
    assert logits(kept).std().item() == pytest.approx(own_std, rel=0.2)
    fan = logits(init_module_(built(name), seed=0)).std().item()
    assert fan == pytest.approx(1.0, rel=0.2)
    untied = init_module_(llama(tied=False), seed=0)
    assert logits(untied).std().item() == pytest.approx(SQRT2, rel=0.2)
    old = init_module_(built(name), seed=0, rules=OLD_DEFAULT_RULES)
    assert logits(old).std().item() == pytest.approx(SQRT2, rel=0.2)


def test_scale_keep_keeps_gpt2s_residual_scaling():
    model = built("gpt2")
    c_proj = model.transformer.h[0].attn.c_proj.weight
    own = c_proj.std(correction=0).item()
    assert own == pytest.approx(0.02 / math.sqrt(2 * 2), rel=0.1)  # GPT-2's residual scaling
    record = next(r for r in init_plan(model, scale="keep") if r.name == "transformer.h.0.attn.c_proj.weight")
    assert record.std == pytest.approx(own) and record.rule == "nspl (own std)"
    before = c_proj.detach().clone()
    init_module_(model, seed=0, scale="keep")
    assert not torch.equal(c_proj, before)
    assert c_proj.std(correction=0).item() == pytest.approx(own, rel=0.1)


def test_a_callable_gets_each_layers_own_stream():
    model = built("gpt2")
    init_module_(model, seed=0, rules={"*.c_fc.weight": lambda p, generator: nspl_filler.fill_(p.T, generator=generator)})
    first, second = (model.transformer.h[k].mlp.c_fc.weight for k in (0, 1))
    assert not torch.equal(first, second)


# ------------------------------------------------------------------ timm (opt-in: needs a working torchvision)
def _timm():
    try:
        import timm
    except Exception as error:  # a torchvision built for another torch fails with RuntimeError, not ImportError
        pytest.skip(f"timm does not import here ({type(error).__name__}: {str(error).splitlines()[0][:120]}); "
                    "the timm tests need timm and a torchvision built for this torch")
    return timm


def test_timm_resnet18_keeps_its_zero_initialised_last_norms():
    timm = _timm()
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=10)
    zero = [name for name, p in model.named_parameters() if name.endswith("bn2.weight") and p.eq(0).all()]
    assert zero, "timm's zero_init_last"
    init_module_(model, seed=0)
    params = dict(model.named_parameters())
    assert all(params[name].eq(0).all() for name in zero)


def test_timm_vit_keeps_its_position_embedding_and_class_token():
    timm = _timm()
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10)
    pos, cls = model.pos_embed.detach().clone(), model.cls_token.detach().clone()
    records = {r.name: r for r in init_plan(model)}
    assert records["pos_embed"].rule == records["cls_token"].rule == "keep"
    assert records["blocks.0.attn.qkv.weight"].role == "layer"
    init_module_(model, seed=0)
    assert torch.equal(model.pos_embed, pos) and torch.equal(model.cls_token, cls)


def test_timm_convnext_keeps_its_recipe_under_scale_keep():
    timm = _timm()
    torch.manual_seed(0)
    model = timm.create_model("convnext_atto", pretrained=False, num_classes=10).eval()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        own = model(images).std().item()
        init_module_(model, seed=0, scale="keep")
        assert model(images).std().item() == pytest.approx(own, rel=0.3)


def test_timm_resnet18_convolutions_match_timm_under_fan_out():
    # timm draws its convolutions from kaiming_normal_(mode="fan_out", nonlinearity="relu"):
    # std sqrt(2 / (out · k²)). mode="fan_out" targets the same std, so the two agree per tensor.
    timm = _timm()
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=10)
    own = {name: p.detach().std().item() for name, p in model.named_parameters() if p.dim() == 4}
    init_module_(model, seed=0, mode="fan_out")
    params = dict(model.named_parameters())
    for name, std in own.items():
        p = params[name]
        target = (2.0 / (p.shape[0] * p[0, 0].numel())) ** 0.5
        assert std == pytest.approx(target, rel=0.1), name
        assert p.std().item() == pytest.approx(target, rel=0.1), name
