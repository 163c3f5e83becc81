"""Dream's published folder layout (`tests/dream_like.py`: the rotary table's "default" lookup, the
`from_pretrained` override, `DreamGenerationConfig.validate`, RoPE frequencies in a non-persistent buffer,
shifted logits) loads unmodified through the adapters, computes its own forward, and decodes as Dream's
`diffusion_generate` does (`tests/reference/dream/published_folder/`, recorded by
`benchmarks/reference/record_dream.py` with the authors' mixin driving this layout's model)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
import transformers
from dream_like import EOS, MASK, PAD, SMALL, weights, write_dream
from safetensors.torch import load_file, save_file

from workbench import DecodeConfig, generate, make_manager
from workbench.cli import main as cli
from workbench.models.adapters import load_adapter
from workbench.models.folders import WeightMismatchError, dtype_argument
from workbench.models.profiles import DREAM

TRANSFORMERS_5 = int(transformers.__version__.split(".")[0]) >= 5
GOLDEN = Path(__file__).parent / "reference" / "dream" / "published_folder" / "dream_like.json"


@pytest.fixture(scope="module")
def dream(tmp_path_factory):
    return write_dream(tmp_path_factory.mktemp("dream") / "dream")


@pytest.fixture(scope="module")
def adapter(dream):
    return load_adapter(dream, trust_remote_code=True)[0]


def remote_class(folder):
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    return get_class_from_dynamic_module("modeling_dream.DreamModel", str(folder), local_files_only=True)


def expected_inv_freq() -> torch.Tensor:
    dim = SMALL["hidden_size"] // SMALL["num_attention_heads"]
    return 1.0 / SMALL["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim)


# -- the published layout against plain transformers ----------------------------------------------------------


def test_plain_transformers_cannot_load_the_published_layout(tmp_path):
    folder = write_dream(tmp_path / "dream")
    cls = remote_class(folder)
    if TRANSFORMERS_5:  # the rotary table lost "default"
        with pytest.raises(KeyError, match="default"):
            cls.from_pretrained(str(folder), local_files_only=True)
    else:  # the override sets generation_config on the (model, loading info) tuple
        with pytest.raises(AttributeError, match="tuple"):
            cls.from_pretrained(str(folder), local_files_only=True, output_loading_info=True)


# -- loading through the shims ----------------------------------------------------------------------------------


def test_the_published_layout_loads_unmodified(tmp_path):
    folder = write_dream(tmp_path / "dream", generation_config=False)  # nothing needs Dream's generation config
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}
    model, tokenizer = load_adapter(folder, trust_remote_code=True)
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}
    assert before == after  # the shims wrap the imported class; the folder is never edited
    assert model.profile is DREAM and (model.mask_id, model.eos_id, model.pad_id) == (MASK, EOS, PAD)
    assert type(model.model).__name__ == "DreamModel" and tokenizer.mask_token_id == MASK
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    assert ("default" in ROPE_INIT_FUNCTIONS) == (not TRANSFORMERS_5)  # transformers' own table is left alone


def test_rope_frequencies_are_computed_not_left_uninitialised(adapter):
    """transformers 5 materialises the non-persistent buffer with torch.empty; the loader recomputes it as the
    module's __init__ does, and keeps it in float32 through a cast (as Dream loaded in bfloat16 has it)."""
    rotary = adapter.model.model.rotary_emb
    assert torch.equal(rotary.inv_freq, expected_inv_freq()) and rotary.attention_scaling == 1.0
    cast = load_adapter(adapter.folder, trust_remote_code=True)[0].to(torch.bfloat16)
    assert cast.model.model.rotary_emb.inv_freq.dtype == torch.float32
    assert torch.equal(cast.model.model.rotary_emb.inv_freq, expected_inv_freq())
    assert cast.embedding_table().dtype == torch.bfloat16


def test_the_adapter_realigns_the_shifted_logits(adapter):
    """The published forward's logits at i predict token i + 1; the adapter's logits at i score position i, as
    Dream's sampler reads them after `cat([logits[:, :1], logits[:, :-1]], 1)`."""
    ids = torch.tensor([[5, 6, 7, MASK, MASK, MASK]])
    with torch.no_grad():
        raw = adapter.model(ids, "full", None).logits  # as Dream's sampler calls it
        ours = adapter.denoise(adapter.embedding_table()[ids], block_ids=torch.zeros_like(ids),
                               valid=torch.ones_like(ids, dtype=torch.bool))
    assert torch.allclose(ours[:, 1:], raw[:, :-1], atol=1e-5) and torch.allclose(ours[:, 0], raw[:, 0], atol=1e-5)


def test_a_missing_tensor_is_still_refused(tmp_path):
    """Skipping Dream's from_pretrained override keeps the strict weight check."""
    folder = write_dream(tmp_path / "dream")
    tensors = load_file(folder / "model.safetensors")
    del tensors["model.layers.0.self_attn.q_proj.weight"]
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(WeightMismatchError, match="q_proj"):
        load_adapter(folder, trust_remote_code=True)


def test_dtype_is_passed_as_the_installed_transformers_expects(dream):
    """transformers < 4.56 hands an unknown `dtype` keyword to the model's __init__ (remote code then fails)."""
    assert dtype_argument(None) == {}
    assert dtype_argument(torch.float64) == {("dtype" if TRANSFORMERS_5 else "torch_dtype"): torch.float64}
    model = load_adapter(dream, trust_remote_code=True, dtype=torch.float64)[0]
    assert model.embedding_table().dtype == torch.float64


# -- decoding --------------------------------------------------------------------------------------------------------


def golden_cases():
    data = json.loads(GOLDEN.read_text())
    return [pytest.param(data, case, id=case["name"]) for case in data["cases"]]


@pytest.mark.parametrize("golden, case", golden_cases())
def test_decodes_as_dreams_diffusion_generate_on_the_published_layout(tmp_path, golden, case):
    """Each prompt alone and all in one left-padded batch give the ids and forward counts the authors' sampler
    gave on this layout's model (its own batched run is listed where it differs, with the cause)."""
    checksum = round(float(sum(w.double().abs().sum() for w in weights(golden["folder"]["seed"]).values())), 4)
    assert checksum == pytest.approx(golden["folder"]["checksum"], rel=1e-9), "dream_like's weights changed: rerecord"
    model = load_adapter(write_dream(tmp_path / "dream", seed=golden["folder"]["seed"]), trust_remote_code=True)[0]
    config = DecodeConfig(cache="none", **case["workbench"]["decode"])
    prompts, params = case["prompts"], case["workbench"]["params"]
    alone = [generate(model, [p], make_manager("dream", params=params), config, sample_ids=[i])[0]
             for i, p in enumerate(prompts)]
    together = generate(model, prompts, make_manager("dream", params=params), config)
    early = {d["row"] for d in case.get("divergences", []) if d["mode"] == "any"}  # Dream forwards an empty canvas
    for results in (alone, together):
        assert [r.ids for r in results] == [w["ids"] for w in case["batch1"]]
        assert [r.nfe < w["nfe"] if i in early else r.nfe == w["nfe"]
                for i, (r, w) in enumerate(zip(results, case["batch1"]))] == [True] * len(prompts)
    listed = {d["row"] for d in case.get("divergences", []) if d["mode"] == "upstream-batch8"}
    assert {i for i, w in enumerate(case["batch8"]) if together[i].ids != w} == listed


def test_batch_equals_alone_on_the_published_layout(adapter):
    prompts = [[5, 6, 7, 8, 9], [10], [11, 12, 13]]
    config = DecodeConfig(block_size=4, max_new_tokens=8, cache="none")
    for params in ({"alg": "entropy"}, {"temperature": 0.8, "alg_temp": 0.3, "alg": "topk_margin"}):
        batch = generate(adapter, prompts, make_manager("dream", params=params), config)
        for i, p in enumerate(prompts):
            row = generate(adapter, [p], make_manager("dream", params=params), config, sample_ids=[i])[0]
            assert (row.ids, row.nfe) == (batch[i].ids, batch[i].nfe)


def test_run_decodes_the_published_layout(dream, tmp_path, capsys):
    task = tmp_path / "t.jsonl"
    task.write_text("".join(json.dumps({"prompt": p, "answer": "w3"}) + "\n" for p in ("w1 w2", "w4")))
    for strategy in ("dream", "threshold"):
        assert cli(["run", "--model", str(dream), "--trust-remote-code", "--task", f"jsonl:{task}?match=exact",
                    "--gen-length", "8", "--block-size", "8", "--strategy", strategy, "--json", "--quiet",
                    "--store", str(tmp_path / f"{strategy}.db")]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["n"] == 2 and out["strategy"] == strategy

