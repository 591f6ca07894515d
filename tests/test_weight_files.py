"""Weights on disk: fit takes a path; load_weights reads safetensors by content whatever the
name, sharded indexes, Hugging Face model folders and torch.load's files; the fit command
says what it reads."""
import json
import os
from pathlib import Path

import pytest
import torch

from nspl_filler import fit, load_weights
from nspl_filler.__main__ import _build_parser, main

safetensors_torch = pytest.importorskip("safetensors.torch", reason="needs safetensors (pip install safetensors)")


def state():
    g = torch.Generator().manual_seed(0)
    return {
        "features.weight": (torch.rand(32, 64, generator=g) * 10).exp_().mul_(torch.randn(32, 64, generator=g).sign()),
        "features.bias": torch.zeros(32),
        "head.weight": torch.randn(40, 32, generator=g),
        "steps": torch.tensor(3),
    }


def same(a, b):
    """The same tensors under the same names (a safetensors file keeps no order of its own)."""
    return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_fit_takes_a_path(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(state(), path)
    by_path, by_value = fit(path), fit(state())
    assert list(by_path) == list(by_value) == ["features.weight", "head.weight"]
    assert all(by_path[k].alpha == by_value[k].alpha for k in by_path)
    assert list(fit(str(path))) == list(by_path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        fit(tmp_path / "missing.pt")


@pytest.mark.parametrize("name", ["weights.safetensors", "weights.bin", "weights.pt", "weights"])
def test_safetensors_are_read_by_content_whatever_the_name(tmp_path, name):
    path = tmp_path / name
    safetensors_torch.save_file(state(), path)
    assert same(load_weights(path), state())


def test_a_torch_file_named_safetensors_is_read_by_torch(tmp_path):
    path = tmp_path / "model.safetensors"
    torch.save({"state_dict": state()}, path)
    assert same(load_weights(path), state())


def test_hugging_face_folders(tmp_path):
    shards = {"model-00001-of-00002.safetensors": ["features.weight", "features.bias"],
              "model-00002-of-00002.safetensors": ["head.weight", "steps"]}
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    for file, names in shards.items():
        safetensors_torch.save_file({k: state()[k] for k in names}, sharded / file)
    index = {"metadata": {}, "weight_map": {k: file for file, names in shards.items() for k in names}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    assert same(load_weights(sharded), state())
    assert same(load_weights(sharded / "model.safetensors.index.json"), state())

    single = tmp_path / "single"
    single.mkdir()
    torch.save(state(), single / "pytorch_model.bin")
    assert same(load_weights(single), state())
    safetensors_torch.save_file({"only.weight": torch.ones(2, 2)}, single / "model.safetensors")
    assert list(load_weights(single)) == ["only.weight"]  # model.safetensors comes first

    bins = tmp_path / "bins"
    bins.mkdir()
    torch.save({"features.weight": state()["features.weight"]}, bins / "a.bin")
    torch.save({"head.weight": state()["head.weight"]}, bins / "b.bin")
    weight_map = {"features.weight": "a.bin", "head.weight": "b.bin"}
    (bins / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert same(load_weights(bins), {k: state()[k] for k in weight_map})


def test_a_folder_that_transformers_saved(tmp_path):
    transformers = pytest.importorskip("transformers", reason="needs transformers")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    config = transformers.GPT2Config(vocab_size=97, n_embd=64, n_layer=2, n_head=4, n_positions=32,
                                     bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config)
    model.save_pretrained(tmp_path / "one")
    model.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    expected = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}  # tied: saved once
    for folder in ("one", "sharded"):
        loaded = load_weights(tmp_path / folder)
        assert sorted(loaded) == sorted(expected), folder
        assert all(torch.equal(loaded[k], expected[k]) for k in expected), folder
    assert main(["fit", str(tmp_path / "sharded"), "--layer-min-size", "1000"]) == 0


def test_bad_files_and_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(IsADirectoryError, match="model.safetensors"):
        load_weights(empty)
    broken = tmp_path / "broken.safetensors"
    header = json.dumps({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    broken.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4)  # 16 bytes promised, 4 there
    with pytest.raises(ValueError, match="safetensors"):
        load_weights(broken)
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": "missing.safetensors"}}))
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_weights(index)
    index.write_text("[1, 2]")
    with pytest.raises(ValueError, match="weight_map"):
        load_weights(index)


def test_the_fit_command_says_what_it_reads():
    commands = next(a for a in _build_parser()._actions if a.dest == "command")
    help_text = " ".join(a.help for a in commands.choices["fit"]._actions if a.dest == "checkpoint")
    assert "safetensors" in help_text and "folder" in help_text and ".pth" in help_text


def test_the_fit_command_reads_a_safetensors_file(tmp_path, capsys):
    path = tmp_path / "weights.bin"
    safetensors_torch.save_file(state(), path)
    assert main(["fit", str(path), "--layer-min-size", "1000"]) == 0
    assert "features.weight" in capsys.readouterr().out
    assert Path(path).is_file()


# ------------------------------------------------------------------ a sharded index is confined to its folder
def sharded(folder, weight_map, shards):
    """An index with this weight_map beside safetensors shards {file: tensors}."""
    folder.mkdir(exist_ok=True)
    for file, tensors in shards.items():
        safetensors_torch.save_file(tensors, folder / file)
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": weight_map}))
    return index


@pytest.mark.parametrize("escape", ["../outside.safetensors", "sub/../../outside.safetensors", "ABSOLUTE", "LINK"])
def test_shards_outside_the_index_folder_are_refused(tmp_path, escape):
    outside = tmp_path / "outside.safetensors"
    safetensors_torch.save_file({"w": torch.ones(2, 2)}, outside)
    folder = tmp_path / "model"
    folder.mkdir()
    if escape == "ABSOLUTE":
        escape = str(outside)
    elif escape == "LINK":  # a symlink inside the folder that resolves outside it
        (folder / "link.safetensors").symlink_to(outside)
        escape = "link.safetensors"
    index = sharded(folder, {"w": escape}, {})
    with pytest.raises(ValueError, match="outside the index's folder"):
        load_weights(index)
    with pytest.raises(ValueError, match="outside the index's folder"):
        load_weights(folder)


def test_a_system_file_named_by_an_index_is_not_opened(tmp_path, capsys):
    index = sharded(tmp_path / "model", {"w": "/etc/hostname", "v": "../../../../../../etc/passwd"}, {})
    assert main(["fit", str(index)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "outside the index's folder" in err


def test_shards_in_subfolders_and_links_within_the_folder_are_read(tmp_path):
    folder = tmp_path / "model"
    (folder / "part").mkdir(parents=True)
    safetensors_torch.save_file({"a": torch.ones(2, 2)}, folder / "part" / "a.safetensors")
    safetensors_torch.save_file({"b": torch.zeros(3)}, folder / "b-real.safetensors")
    (folder / "b.safetensors").symlink_to(folder / "b-real.safetensors")
    index = sharded(folder, {"a": "part/a.safetensors", "b": "b.safetensors"}, {})
    assert same(load_weights(index), {"a": torch.ones(2, 2), "b": torch.zeros(3)})


def test_a_hub_snapshot_may_link_to_its_blobs(tmp_path):
    # The hub cache's layout: every file of snapshots/<revision>/, the index included, is a
    # symlink to ../../blobs/<hash>; the index's names are relative to the snapshot.
    repo = tmp_path / "models--org--name"
    (repo / "blobs").mkdir(parents=True)
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    safetensors_torch.save_file({"a": torch.ones(2, 2)}, repo / "blobs" / "f00d")
    (snapshot / "model-1.safetensors").symlink_to(Path("..") / ".." / "blobs" / "f00d")
    (repo / "blobs" / "1ndex").write_text(json.dumps({"weight_map": {"a": "model-1.safetensors"}}))
    index = snapshot / "model.safetensors.index.json"
    index.symlink_to(Path("..") / ".." / "blobs" / "1ndex")
    assert same(load_weights(snapshot), {"a": torch.ones(2, 2)})
    # A link from the snapshot to anywhere but blobs/ is refused.
    (snapshot / "model-2.safetensors").symlink_to(tmp_path / "elsewhere")
    safetensors_torch.save_file({"b": torch.ones(2)}, tmp_path / "elsewhere")
    (repo / "blobs" / "1ndex").write_text(json.dumps({"weight_map": {"a": "model-1.safetensors",
                                                                     "b": "model-2.safetensors"}}))
    with pytest.raises(ValueError, match="outside the index's folder"):
        load_weights(index)


@pytest.mark.parametrize("case", ["itself", "cycle", "nested", "null"])
def test_indexes_that_would_recurse_are_value_errors(tmp_path, case, capsys):
    folder = tmp_path / "model"
    folder.mkdir()
    index = folder / "model.safetensors.index.json"
    if case == "itself":
        index.write_text(json.dumps({"weight_map": {"w": index.name}}))
        match = "names itself"
    elif case == "cycle":
        (folder / "other.index.json").write_text(json.dumps({"weight_map": {"w": index.name}}))
        index.write_text(json.dumps({"weight_map": {"w": "other.index.json"}}))
        match = "names the index"
    elif case == "nested":
        index.write_text('{"weight_map": ' + "[" * 100_000 + "]" * 100_000 + "}")
        match = "nested too deeply"
    else:
        index.write_text(json.dumps({"weight_map": {"w": "a\0b"}}))
        match = "not a usable path"
    with pytest.raises(ValueError, match=match):
        load_weights(index)
    assert main(["fit", str(folder)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


# ------------------------------------------------------------------ an index loads what its weight_map says
def test_each_tensor_comes_from_the_shard_the_map_names(tmp_path):
    index = sharded(tmp_path / "m", {"a": "one.safetensors", "b": "two.safetensors"},
                    {"one.safetensors": {"a": torch.ones(2), "extra": torch.ones(5)},
                     "two.safetensors": {"b": torch.zeros(3)}})
    loaded = load_weights(index)
    assert same(loaded, {"a": torch.ones(2), "b": torch.zeros(3)})  # "extra" is not in the map


def test_a_tensor_held_by_two_shards_is_refused_with_its_name(tmp_path):
    index = sharded(tmp_path / "m", {"a": "one.safetensors", "b": "two.safetensors"},
                    {"one.safetensors": {"a": torch.ones(2)},
                     "two.safetensors": {"a": torch.full((2,), 7.0), "b": torch.zeros(3)}})
    with pytest.raises(ValueError, match=r"'a' held by both 'one.safetensors' and 'two.safetensors'"):
        load_weights(index)


def test_a_shard_that_lacks_a_mapped_tensor_is_refused(tmp_path):
    index = sharded(tmp_path / "m", {"a": "one.safetensors", "gone": "one.safetensors"},
                    {"one.safetensors": {"a": torch.ones(2)}})
    with pytest.raises(ValueError, match="lacks tensor.*'gone'"):
        load_weights(index)


# ------------------------------------------------------------------ contents fit cannot use: named, not crashed on
def big(seed=0):
    return torch.randn(64, 64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_float8_checkpoints_are_a_type_error_naming_the_layer(tmp_path, dtype, capsys):
    path = tmp_path / "fp8.safetensors"
    safetensors_torch.save_file({"layer.weight": big().to(dtype)}, path)
    with pytest.raises(TypeError, match=f"'layer.weight'.*{str(dtype).split('.')[1]}.*dequantise"):
        fit(path)
    assert main(["fit", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "layer.weight" in err


def test_meta_tensors_in_a_checkpoint_are_a_value_error(tmp_path, capsys):
    path = tmp_path / "meta.pt"
    torch.save({"layer.weight": torch.empty(64, 64, device="meta")}, path)
    with pytest.raises(ValueError, match="'layer.weight'.*meta device"):
        fit(path)
    assert main(["fit", str(path)]) == 2
    assert "meta device" in capsys.readouterr().err


def test_a_nan_layer_is_named(tmp_path, capsys):
    bad = big(1)
    bad[5, 7] = float("nan")
    path = tmp_path / "nan.pt"
    torch.save({"good.weight": big(0), "bad.weight": bad}, path)
    with pytest.raises(ValueError, match=r"'bad.weight': weights contain 1 non-finite .* index 327"):
        fit(path)
    assert main(["fit", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "bad.weight" in err
