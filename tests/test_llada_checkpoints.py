"""LLaDA checkpoints as published (issue 14, items 1, 2, 4, 5), on a fake remote-code folder that behaves like
LLaDA's published modelling file (`tests/llada_like.py`: attention that ignores its mask, no `post_init()`, a
transformers-4 `tie_weights()`, optionally `import einops`), tiny and random, loaded from a local folder.
"""

from __future__ import annotations

import argparse
import json
import sys

import pytest
import torch
import transformers

from llada_like import BOS, EOS, MASK, PAD, write_llada
from workbench.decoding.cache import FastDllmCache, make_runner
from workbench.cli import main as cli
from workbench.commands.common import chat_template_for
from workbench.decoding.loop import generate
from workbench.models.adapters import AdapterError, TransformersDenoiser, load_adapter
from workbench.models.loading import load_model
from workbench.models.native import NativeDenoiser
from workbench.models.profiles import LLADA
from workbench.models.tokenizer import encode_prompt
from workbench.decoding.registry import make_manager
from workbench.decoding.state import DecodeConfig

PROMPTS = [[BOS, 5, 6], [BOS, 7, 8, 9, 10, 11], [BOS, 12], [BOS, 13, 14, 15, 16, 17]]  # four lengths


@pytest.fixture(scope="module")
def llada(tmp_path_factory):
    return write_llada(tmp_path_factory.mktemp("llada") / "LLaDA-tiny")


def remote(folder, **kwargs):
    """The folder run through its own modelling code (not mapped onto the native model)."""
    return load_adapter(folder, trust_remote_code=True, native=False, **kwargs)


def logits(model, ids, valid=None):
    valid = torch.ones_like(ids, dtype=torch.bool) if valid is None else valid
    with torch.no_grad():
        return model.denoise(model.embedding_table()[ids], block_ids=torch.zeros_like(ids), valid=valid)


# -- 4: the published code loads as downloaded -----------------------------------------------------------
def test_plain_transformers_cannot_load_the_published_code(llada):
    with pytest.raises(AttributeError, match="all_tied_weights_keys"):  # why the loader has a shim
        transformers.AutoModel.from_pretrained(str(llada), trust_remote_code=True, local_files_only=True)


@pytest.mark.parametrize("tied", [False, True])
def test_the_published_code_loads_through_the_shim_and_computes_its_own_forward(tmp_path, tied):
    folder = write_llada(tmp_path / "m", weight_tying=tied)
    model, _ = remote(folder, dtype=torch.float64)
    assert isinstance(model, TransformersDenoiser) and model.profile is LLADA
    ids = torch.tensor([[BOS, 5, 6, MASK, MASK, EOS]])
    with torch.no_grad():
        own = model.model(input_ids=ids).logits
    torch.testing.assert_close(logits(model, ids), own)
    assert "post_init" not in (folder / "modeling_llada.py").read_text().split("# (no self.post_init()")[0]


def test_a_missing_import_names_the_extra_that_installs_it(tmp_path, monkeypatch):
    folder = write_llada(tmp_path / "m", einops=True)
    monkeypatch.setitem(sys.modules, "einops", None)  # as on a machine without it
    with pytest.raises(AdapterError, match=r"imports einops, which is not installed; pip install "
                                           r"'dllm-workbench\[llada\]'"):
        remote(folder)


def test_with_einops_installed_the_file_that_imports_it_loads(tmp_path):
    pytest.importorskip("einops")  # the [llada] extra (.ci/run installs it)
    model, _ = remote(write_llada(tmp_path / "m", einops=True))
    assert isinstance(model, TransformersDenoiser)


def test_special_ids_come_from_the_folder_then_the_profile(tmp_path):
    own = write_llada(tmp_path / "own", mask_token_id=7)  # a LLaDA-family folder with its own mask id
    with pytest.warns(UserWarning, match="tokenizer mask id 4 differs from 7"):
        model, _ = remote(own)
    assert (model.mask_id, model.eos_id, model.pad_id) == (7, EOS, PAD)
    native, _ = load_model(own, trust_remote_code=True)
    assert (native.mask_id, native.eos_id) == (7, EOS)
    model, _ = remote(write_llada(tmp_path / "tok", mask_token_id=None))  # none in config.json: the tokenizer's
    assert model.mask_id == MASK


def test_chat_template_is_applied_when_the_profile_or_the_user_asks(llada, tiny_model):
    model, tokenizer = load_model(llada, trust_remote_code=True)
    args = argparse.Namespace(chat_template="auto")
    assert chat_template_for(args, model, tokenizer)  # LLaDA's profile: instruct checkpoints
    assert not chat_template_for(argparse.Namespace(chat_template="off"), model, tokenizer)
    from workbench.models.tokenizer import build_char_tokenizer

    char = build_char_tokenizer()
    assert not chat_template_for(args, tiny_model, char)  # shipped/native models: raw prompts
    with pytest.raises(ValueError, match="has no chat template"):
        chat_template_for(argparse.Namespace(chat_template="on"), tiny_model, char)
    assert encode_prompt(tokenizer, "w1 w2", True) == [BOS, 6, 7, EOS, BOS]
    assert encode_prompt(tokenizer, "w1 w2", False) == [6, 7]


def test_run_decodes_the_rendered_prompt_and_keys_on_it(llada, tmp_path, capsys):
    task = tmp_path / "t.jsonl"
    task.write_text(json.dumps({"prompt": "w1 w2", "answer": "w3"}) + "\n")
    seen = tmp_path / "seen.json"
    plugin = tmp_path / "record.py"
    plugin.write_text(f'''
import json
from workbench.decoding.registry import hookimpl

class Record:
    @hookimpl
    def on_block_end(self, state, committed):
        ids = state.context[0][state.context_valid[0]].tolist()
        open({str(seen)!r}, "w").write(json.dumps(ids))
''')
    base = ["run", "--model", str(llada), "--trust-remote-code", "--task", f"jsonl:{task}?match=exact",
            "--gen-length", "4", "--block-size", "4", "--strategy", "threshold", "--json", "--quiet",
            "--plugin", str(plugin)]
    for choice, prompt in (("on", [BOS, 6, 7, EOS, BOS]), ("off", [6, 7])):
        assert cli(base + ["--chat-template", choice, "--store", str(tmp_path / f"{choice}.db")]) == 0
        assert json.loads(seen.read_text()) == prompt
        seen.unlink()
        assert cli(["trace", "--model", str(llada), "--trust-remote-code", "--task", f"jsonl:{task}?match=exact",
                    "--gen-length", "4", "--block-size", "4", "--strategy", "threshold", "--plugin", str(plugin),
                    "--chat-template", choice]) == 0
        assert json.loads(seen.read_text()) == prompt  # trace decodes what run decodes
    capsys.readouterr()


# -- 1: batch composition never changes a row's decode ---------------------------------------------------
@pytest.mark.parametrize("strategy", ["threshold", "spd"])
def test_batch_n_equals_batch_1_on_a_model_whose_attention_ignores_the_mask(llada, strategy):
    model, _ = remote(llada, dtype=torch.float64)
    assert model.honours_padding is False  # the profile knows the published attention ignores the mask
    config = DecodeConfig(block_size=4, max_new_tokens=8)
    batch = generate(model, PROMPTS, make_manager(strategy), config)
    alone = [generate(model, [p], make_manager(strategy), config)[0] for p in PROMPTS]
    assert [(r.ids, r.nfe) for r in batch] == [(r.ids, r.nfe) for r in alone]
    # Without the per-length forwards the padding is attended to, and rows change with their batch.
    model.honours_padding = True
    padded = logits(model, torch.tensor([[PAD, PAD, BOS, 5, 6]]), torch.tensor([[False, False, True, True, True]]))
    assert not torch.allclose(padded[0, 2:], logits(model, torch.tensor([[BOS, 5, 6]]))[0])


def test_batch_n_equals_batch_1_on_the_native_form(llada):
    model, _ = load_model(llada, trust_remote_code=True, dtype=torch.float64)
    config = DecodeConfig(block_size=4, max_new_tokens=8)
    batch = generate(model, PROMPTS, make_manager("threshold"), config)
    alone = [generate(model, [p], make_manager("threshold"), config)[0] for p in PROMPTS]
    assert [(r.ids, r.nfe) for r in batch] == [(r.ids, r.nfe) for r in alone]


def test_an_unknown_remote_model_is_probed_for_padding(tmp_path):
    from test_adapters import write_remote
    from workbench.models.adapters import honours_padding

    adapter, _ = load_adapter(write_remote(tmp_path / "generic", "tiny-unknown"), trust_remote_code=True)
    assert adapter.honours_padding is True and honours_padding(adapter)
    llada_model, _ = remote(write_llada(tmp_path / "l"))
    assert honours_padding(llada_model) is False  # the probe sees what the profile says


# -- 2: LLaDA weights on the native model; cache modes done or refused -----------------------------------
@pytest.mark.parametrize("tied", [False, True])
def test_a_llada_checkpoint_loads_into_the_native_model_with_the_same_logits(tmp_path, tied):
    folder = write_llada(tmp_path / "m", weight_tying=tied, mlp_hidden_size=48)
    native, _ = load_model(folder, trust_remote_code=True, dtype=torch.float64)
    published, _ = remote(folder, dtype=torch.float64)
    assert isinstance(native, NativeDenoiser) and not native.block_causal and native.profile is LLADA
    ids = torch.tensor([[BOS, 5, 6, 7, MASK, MASK, MASK, MASK], [BOS, 9, MASK, 11, MASK, 13, MASK, EOS]])
    a, b = logits(native, ids), logits(published, ids)
    assert float((a - b).abs().max()) < 1e-5 and float(a.abs().max()) > 1  # agree on non-trivial logits


@pytest.mark.parametrize("change, why", [({"include_qkv_bias": True}, "linear biases"),
                                         ({"n_kv_heads": 2}, "grouped-query attention")])
def test_a_llada_that_does_not_map_runs_its_own_code(tmp_path, change, why):
    from workbench.models.conversion import llada_mapping

    folder = write_llada(tmp_path / "m", **change)
    assert any(why in r for r in llada_mapping(json.loads((folder / "config.json").read_text())))
    model, _ = load_model(folder, trust_remote_code=True)
    assert isinstance(model, TransformersDenoiser)


def test_cache_modes_are_done_on_the_native_form_and_refused_on_remote_code(llada, tmp_path, capsys):
    from workbench.results.store import ResultsStore

    native, _ = load_model(llada, trust_remote_code=True)
    assert isinstance(make_runner(native, "dual"), FastDllmCache)
    task = tmp_path / "t.jsonl"
    task.write_text("".join(json.dumps({"prompt": f"w{i} w{i + 1}", "answer": "w3"}) + "\n" for i in range(3)))
    base = ["run", "--trust-remote-code", "--task", f"jsonl:{task}?match=exact", "--gen-length", "8",
            "--block-size", "4", "--strategy", "threshold", "--json", "--quiet", "--chat-template", "off"]
    store = tmp_path / "r.db"
    for asked in ("auto", "none", "dual"):
        assert cli(base + ["--model", str(llada), "--cache", asked, "--store", str(store)]) == 0
    with ResultsStore(store, readonly=True) as db:
        modes = sorted(run.config["decode"]["cache"] for run in db.runs())
    assert modes == ["dual", "none"]  # auto ran without a cache: it is the same run as none
    unmapped = write_llada(tmp_path / "biased", include_qkv_bias=True)
    capsys.readouterr()
    assert cli(base + ["--model", str(unmapped), "--cache", "dual", "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert "--cache dual" in err and "no key/value cache" in err and len(err.strip().splitlines()) == 1


# -- 5: train --init on a LLaDA folder --------------------------------------------------------------------
@pytest.mark.parametrize("trainer", ["mdlm", "uniform", "oput"])
def test_train_init_on_a_llada_folder_works_with_every_trainer(llada, tmp_path, trainer):
    out = tmp_path / "out"
    assert cli(["train", "--trainer", trainer, "--init", str(llada), "--trust-remote-code", "--preset", "micro",
                "--steps", "2", "--eval-limit", "0", "--out", str(out), "--quiet"]) == 0
    model, _ = load_model(out)
    assert isinstance(model, NativeDenoiser) and model.profile is LLADA and not model.block_causal


def test_train_init_refuses_a_llada_that_does_not_map_naming_why(tmp_path, capsys):
    folder = write_llada(tmp_path / "m", n_kv_heads=2)
    assert cli(["train", "--init", str(folder), "--trust-remote-code", "--preset", "micro", "--steps", "1",
                "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "grouped-query attention" in err and "does not map onto the native model" in err
