"""The std of a model's logits at initialisation: the model's own init against init_module_.

For each model: build it (its own init), measure the std of its logits on a fixed random
input; then re-initialise copies with init_module_ under each setting and measure again:

- "previous default": what init_module_ did before roles (NSPL with the ReLU gain for every
  tensor of >= 2 dims, fans from the shape, biases 0, norm weights 1), as rules;
- "fan": today's default (layer weights NSPL with the ReLU gain from their layout's fans,
  embeddings NSPL with gain 1, everything else kept);
- "fan_out": the default with mode="fan_out" (the fan torchvision's and timm's CNNs use);
- "keep": scale="keep" (NSPL at each tensor's own std).

Models: transformers BERT-base, GPT-2 small, a Llama of GPT-2-small width and depth, T5 at
t5-small's size (its default config), and a Mixtral (Mixture-of-Experts: 8 experts, top 2) of
GPT-2-small width, 6 layers (all from configs: nothing is downloaded); timm resnet18,
vit_tiny_patch16_224 and convnext_atto where timm imports (it needs a working torchvision).

    python benchmarks/model_defaults.py                  # Markdown table on stdout
    python benchmarks/model_defaults.py --json out.json
    python benchmarks/model_defaults.py --only T5 --only Mixtral   # the models whose name contains these
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import time

import torch

import nspl_filler
from nspl_filler.layouts import is_norm

os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: init_module_'s defaults before parameters had roles, written as rules.
OLD_DEFAULT_RULES = [
    (lambda name, p, m: p.dim() >= 2, "nspl"),
    ("*bias", "zeros"),
    (lambda name, p, m: is_norm(m), "ones"),
]


def transformers_models():
    from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    def tokens(vocab):
        return {"input_ids": torch.randint(0, vocab, (2, 64), generator=torch.Generator().manual_seed(0))}

    yield "BERT-base (BertForMaskedLM)", lambda: BertForMaskedLM(BertConfig()), tokens(30522)
    yield "GPT-2 small (GPT2LMHeadModel)", lambda: GPT2LMHeadModel(GPT2Config()), tokens(50257)
    llama = LlamaConfig(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                        num_attention_heads=12, num_key_value_heads=12, max_position_embeddings=512)
    yield "Llama, 768 wide, 12 layers (LlamaForCausalLM)", lambda: LlamaForCausalLM(llama), tokens(32000)

    from transformers import MixtralConfig, MixtralForCausalLM, T5Config, T5ForConditionalGeneration

    t5_inputs = tokens(32128)
    t5_inputs["decoder_input_ids"] = torch.randint(0, 32128, (2, 64), generator=torch.Generator().manual_seed(1))
    yield "T5, t5-small size (T5ForConditionalGeneration)", lambda: T5ForConditionalGeneration(T5Config()), t5_inputs
    mixtral = MixtralConfig(vocab_size=32000, hidden_size=768, intermediate_size=1536, num_hidden_layers=6,
                            num_attention_heads=12, num_key_value_heads=4, num_local_experts=8,
                            num_experts_per_tok=2, max_position_embeddings=512)
    yield ("Mixtral, 768 wide, 6 layers, 8 experts (MixtralForCausalLM)", lambda: MixtralForCausalLM(mixtral),
           tokens(32000))


def timm_models():
    import timm

    images = {"x": torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))}
    for name in ("resnet18", "vit_tiny_patch16_224", "convnext_atto"):
        yield f"timm {name}", (lambda name=name: timm.create_model(name, pretrained=False)), images


def logits_std(model, inputs) -> float:
    model.eval()
    with torch.no_grad():
        out = model(**inputs)
    logits = out if isinstance(out, torch.Tensor) else out.logits
    return float(logits.float().std())


def measure(build, inputs, seed: int = 0) -> dict[str, float]:
    torch.manual_seed(seed)
    own = build()
    row = {"own init": logits_std(own, inputs)}
    settings = {
        "previous default": dict(rules=OLD_DEFAULT_RULES),
        "fan (default)": {},
        "fan_out": dict(mode="fan_out"),
        "keep": dict(scale="keep"),
    }
    for label, args in settings.items():
        model = copy.deepcopy(own)
        nspl_filler.init_module_(model, seed=seed, **args)
        row[label] = logits_std(model, inputs)
    return row


def versions() -> dict[str, str]:
    found = {"torch": torch.__version__}
    for name in ("transformers", "timm", "torchvision"):
        try:
            found[name] = __import__(name).__version__
        except Exception:  # not installed, or does not import with this torch
            pass
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None, help="write the rows as JSON here")
    parser.add_argument("--only", action="append", default=None,
                        help="measure only the models whose name contains this (repeatable)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows, missing = {}, []
    sources = [("transformers", transformers_models), ("timm", timm_models)]
    for library, models in sources:
        try:
            for name, build, inputs in models():
                if args.only and not any(part in name for part in args.only):
                    continue
                start = time.perf_counter()
                rows[name] = measure(build, inputs)
                print(f"{name}: {rows[name]} ({time.perf_counter() - start:.0f} s)", flush=True)
        except Exception as error:  # a library that does not import here is reported, not fatal
            missing.append(f"{library}: {type(error).__name__}: {str(error).splitlines()[0][:160]}")
    columns = ["own init", "previous default", "fan (default)", "fan_out", "keep"]
    print()
    print("| model | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[c]:.3g}" for c in columns) + " |")
    for line in missing:
        print(f"\nnot measured: {line}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"rows": rows, "not_measured": missing, "versions": versions(),
                       "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
                       "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, out, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
