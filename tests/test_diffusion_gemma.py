"""DiffusionGemma (transformers' real architecture, tiny random weights built from a config, offline):
the adapter's forward is the model's own, `uniform-eb` reproduces `DiffusionGemmaForBlockDiffusion.generate`
token for token and forward for forward, the built-in strategies run on it, and the CLI drives a saved folder.

Parity is against real code (transformers' own `generate`); nothing here is a fake."""

from __future__ import annotations

import json

import attrs
import pytest
import torch

from workbench.cli import main as cli
from workbench.decoding.loop import generate
from workbench.models.diffusion_gemma import DiffusionGemmaDenoiser, build_random_diffusion_gemma
from workbench.models.tokenizer import build_char_tokenizer
from workbench.authoring.properties import check_batch_invariance
from workbench.decoding.registry import make_manager
from workbench.decoding.rng import sample_seed
from workbench.decoding.state import DecodeConfig, ModelInputsDenied

SETTINGS = [
    dict(max_denoising_steps=6),  # generate's other defaults: entropy bound 0.1, t 0.4..0.8, stability 1
    dict(max_denoising_steps=6, stability_threshold=1, confidence_threshold=3.0),  # rows stop early
    dict(max_denoising_steps=10, entropy_bound=1.0, t_min=0.1, t_max=2.0, stability_threshold=2,
         confidence_threshold=4.0),
    dict(max_denoising_steps=8, entropy_bound=0.02, stability_threshold=0, confidence_threshold=4.3),
]


def reference(model, prompts: torch.Tensor, seed: int, new: int, **settings) -> list[tuple[list[int], int]]:
    """(ids cut after EOS, decoder forwards) per row from transformers' own generate under manual_seed."""
    torch.manual_seed(seed)
    out = model.generate(prompts, max_new_tokens=new, **settings)
    rows = []
    for i in range(prompts.shape[0]):
        ids = out.sequences[i, prompts.shape[1]:].tolist()  # whole canvases: cut to `new` below
        kept = sum(t != model.generation_config.pad_token_id for t in ids)  # generate's TPF numerator
        forwards = round(kept / float(out.tokens_per_forward[i]))
        eos, ids = model.generation_config.eos_token_id, ids[:new]
        rows.append((ids[:ids.index(eos) + 1] if eos in ids else ids, forwards))
    return rows


def workbench(denoiser, prompts: torch.Tensor, seed: int, new: int, rng: str, last_block: str = "full",
              **settings):
    config = DecodeConfig(block_size=denoiser.canvas_length, max_new_tokens=new, rng=rng, seed=seed,
                          max_forwards_per_block=settings["max_denoising_steps"], last_block=last_block)
    results = generate(denoiser, prompts.tolist(), make_manager("uniform-eb", params=settings), config)
    return results, [(r.ids, r.nfe) for r in results]


@pytest.fixture(scope="module")
def small():
    model = build_random_diffusion_gemma(128)
    return model, DiffusionGemmaDenoiser(model)


@pytest.fixture(scope="module")
def wide():
    """Vocabulary 512: EOS is rare, so no row of a batch ends before the others (see the batch test)."""
    model = build_random_diffusion_gemma(512, seed=1)
    return model, DiffusionGemmaDenoiser(model)


@pytest.mark.parametrize("settings", SETTINGS, ids=range(len(SETTINGS)))
@pytest.mark.parametrize("seed", [0, 1])
def test_batch_one_equals_generate(small, settings, seed):
    model, denoiser = small
    prompt = torch.randint(4, 128, (1, 5), generator=torch.Generator().manual_seed(seed))
    # Per-sample streams: sample 0 draws from sample_seed(seed, 0), generate from the global stream.
    expected = reference(model, prompt, sample_seed(seed, 0), 32, **settings)
    results, got = workbench(denoiser, prompt, seed, 32, "sample", **settings)
    assert got == expected
    tpf = float(torch.tensor(expected[0][1]))  # generate counts EOS as a token, the workbench does not
    assert results[0].nfe == tpf and results[0].tokens + (2 in results[0].ids) == len(expected[0][0])


@pytest.mark.parametrize("settings", SETTINGS, ids=range(len(SETTINGS)))
def test_batch_of_four_equals_generate_on_the_batch_stream(wide, settings):
    """Exact while no row ends (EOS) before the batch's last canvas: generate keeps denoising a finished row
    and its draws move the shared stream, where the workbench drops the row (benchmarks/diffusion_gemma.py
    measures the agreement when rows do end early)."""
    model, denoiser = wide
    for seed in range(3, 13):  # the first seed whose rows all reach the last canvas (deterministic)
        prompts = torch.randint(4, 512, (4, 5), generator=torch.Generator().manual_seed(seed))
        expected = reference(model, prompts, seed, 32, **settings)
        if all(len(ids) > 24 for ids, _ in expected):
            break
    else:
        pytest.fail("no seed in 3..12 keeps every row to the last canvas")
    _, got = workbench(denoiser, prompts, seed, 32, "batch", **settings)
    assert got == expected


@pytest.fixture(scope="module")
def canvas6():
    """Canvas 6, vocabulary 512: 27 new tokens leave a last canvas of 3 positions (issue 21, item 3)."""
    model = build_random_diffusion_gemma(512, canvas_length=6, seed=1)
    return model, DiffusionGemmaDenoiser(model)


@pytest.mark.parametrize("settings", SETTINGS[:3], ids=range(3))
def test_max_new_tokens_not_a_multiple_of_the_canvas_equals_generate_at_batch_one(canvas6, settings):
    """generate denoises a whole last canvas and returns it whole; `last_block="full"` (DiffusionGemma's
    default) does the same and cuts to max_new_tokens: same ids, same decoder forwards. A short last block
    (3 positions) is another computation: equal up to position 24, then not."""
    model, denoiser = canvas6
    assert denoiser.decode_defaults()["last_block"] == "full"
    for seed in (0, 1):
        prompt = torch.randint(4, 512, (1, 5), generator=torch.Generator().manual_seed(seed))
        expected = reference(model, prompt, sample_seed(seed, 0), 27, **settings)
        results, got = workbench(denoiser, prompt, seed, 27, "sample", **settings)
        assert got == expected and len(results[0].ids) == min(27, len(expected[0][0]))
        if len(expected[0][0]) == 27:  # no EOS before the last canvas
            short = workbench(denoiser, prompt, seed, 27, "sample", last_block="short", **settings)[1]
            assert short[0][0][:24] == expected[0][0][:24] and short[0][0][24:] != expected[0][0][24:]


@pytest.mark.parametrize("settings", SETTINGS[:3], ids=range(3))
def test_max_new_tokens_not_a_multiple_of_the_canvas_equals_generate_on_a_batch(canvas6, settings):
    model, denoiser = canvas6
    for seed in range(3, 13):  # the first seed whose rows all reach the last canvas (deterministic)
        prompts = torch.randint(4, 512, (4, 5), generator=torch.Generator().manual_seed(seed))
        expected = reference(model, prompts, seed, 27, **settings)
        if all(len(ids) > 24 for ids, _ in expected):
            break
    else:
        pytest.fail("no seed in 3..12 keeps every row to the last canvas")
    _, got = workbench(denoiser, prompts, seed, 27, "batch", **settings)
    assert got == expected


def test_per_sample_streams_make_a_batch_decode_as_its_rows_alone(small):
    _, denoiser = small
    prompts = [[5, 9, 30], [7], [40, 41]]
    make = lambda: make_manager("uniform-eb", params={"max_denoising_steps": 6})  # noqa: E731
    config = DecodeConfig(block_size=8, max_new_tokens=16, max_forwards_per_block=6)
    check_batch_invariance(make, denoiser, prompts, config)  # different prompt lengths: left padding too


def test_the_adapter_forward_is_the_model_forward(small):
    model, denoiser = small
    from transformers import DynamicCache

    prompt = torch.randint(4, 128, (2, 5), generator=torch.Generator().manual_seed(4))
    canvas = torch.randint(0, 128, (2, 8), generator=torch.Generator().manual_seed(5))
    sc = torch.randn(2, 8, 128)
    cache = DynamicCache(config=model.config.get_text_config(decoder=True))
    model.model.encoder(input_ids=prompt, cache=cache)
    theirs = model(decoder_input_ids=canvas, cache=cache, self_conditioning_logits=sc).logits
    ours = denoiser.decode(denoiser.embedding_table()[canvas], cache=cache, masks=None,
                           positions=torch.arange(5, 13)[None].expand(2, -1), self_conditioning=sc)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("strategy,params", [("threshold", {}), ("hierarchical", {}), ("hard", {}),
                                             ("spd", {"open_input": "mean"})])
def test_the_builtin_strategies_run_on_diffusion_gemma(small, strategy, params):
    _, denoiser = small
    config = DecodeConfig(block_size=8, max_new_tokens=16)
    results = generate(denoiser, [[5, 6, 7], [8]], make_manager(strategy, params=params), config)
    assert all(len(r.ids) <= 16 and all(0 <= t < 128 for t in r.ids) and r.nfe_total == r.nfe + len(r.block_steps)
               for r in results)  # nfe_total adds one encoder forward per block (the prefill, then each canvas)


def test_spd_refuses_without_an_explicit_open_input_and_cache_none_is_refused(small):
    from workbench.decoding.contract import PluginRuntimeError

    _, denoiser = small
    config = DecodeConfig(block_size=8, max_new_tokens=8)
    with pytest.raises(PluginRuntimeError, match=r"plugin 'spd' .*SPD's hybrid mixes each token toward the mask "
                                                 r"embedding.*has no mask token.*open_input=mean"):
        generate(denoiser, [[5]], make_manager("spd"), config)
    with pytest.raises(PluginRuntimeError, match="DiffusionGemma is a uniform-state model and has no mask token"):
        generate(denoiser, [[5]], make_manager("spd", params={"open_input": "mask"}), config)
    with pytest.raises(ModelInputsDenied, match="--cache none is not available for DiffusionGemma"):
        generate(denoiser, [[5]], make_manager("threshold"), DecodeConfig(block_size=8, max_new_tokens=8,
                                                                          cache="none"))


def test_the_sampler_says_when_the_cap_is_below_its_steps(small):
    from workbench.decoding.contract import PluginRuntimeError

    _, denoiser = small
    with pytest.raises(PluginRuntimeError, match=r"max_denoising_steps=48 steps per block, but the forward cap is 8"):
        generate(denoiser, [[5]], make_manager("uniform-eb"),
                 DecodeConfig(block_size=8, max_new_tokens=8, max_forwards_per_block=8))
    # Without a cap of its own the decode takes the schedule's (uniform-eb declares forwards_per_block).
    (row,) = generate(denoiser, [[5]], make_manager("uniform-eb"), DecodeConfig(block_size=8, max_new_tokens=8))
    assert max(row.block_steps) <= 48


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A saved DiffusionGemma folder with the char tokenizer (ids 0/2 = PAD/EOS, as the config says)."""
    path = tmp_path_factory.mktemp("dgemma")
    tokenizer = build_char_tokenizer()
    model = build_random_diffusion_gemma(len(tokenizer) + 6, canvas_length=8, seed=2)
    model.generation_config.max_denoising_steps = 6
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_run_and_ablate_a_diffusion_gemma_folder(folder, tmp_path, capsys):
    store = str(tmp_path / "r.db")
    assert cli(["run", "--model", str(folder), "--strategy", "uniform-eb", "--task", "choice", "--limit", "6",
                "--store", store, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["block_size"] == 8 and result["n"] == 6 and result["nfe"] > 0
    assert result["decisions"]["revoke"] == "uniform-eb" and result["decisions"]["process_logits"] == "uniform-eb"
    assert cli(["ablate", "--model-dir", str(folder.parent), "--trainers", folder.name, "--strategies",
                "uniform-eb,threshold,hard", "--tau", "0.1", "--task", "choice", "--limit", "4", "--store", store,
                "--json"]) == 0
    grid = json.loads(capsys.readouterr().out)
    assert {c["strategy"] for c in grid["cells"]} == {"uniform-eb", "threshold", "hard"}


# -- folders that used to load wrong without a word (issue 21, item 2) ------------------------------------

def save_folder(path, *, canvas: int = 8, seed: int = 2, **text):
    """A DiffusionGemma folder with the char tokenizer; `text`: text_config fields to change."""
    tokenizer = build_char_tokenizer()
    model = build_random_diffusion_gemma(len(tokenizer) + 6, canvas_length=canvas, seed=seed)
    model.generation_config.max_denoising_steps = 6
    for name, value in text.items():
        setattr(model.config.text_config, name, value)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_a_folder_missing_a_tensor_is_refused_naming_it_by_run_and_train(tmp_path, capsys):
    """transformers would initialise the tensor at random and say so in a log line the CLI hides."""
    from safetensors.torch import load_file, save_file

    from workbench.models.folders import WeightMismatchError
    from workbench.models.loading import load_model

    folder = save_folder(tmp_path / "dg")
    weights = load_file(folder / "model.safetensors")
    del weights["model.decoder.layers.0.self_attn.q_proj.weight"]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(WeightMismatchError, match=r"missing model\.decoder\.layers\.0\.self_attn\.q_proj\.weight"):
        load_model(folder)
    capsys.readouterr()
    assert cli(["run", "--model", str(folder), "--strategy", "uniform-eb", "--limit", "2", "--store",
                str(tmp_path / "r.db")]) == 2
    err = capsys.readouterr().err
    assert "q_proj.weight" in err and err.strip().splitlines()[-1].startswith("workbench run: error:")
    assert cli(["train", "--init", str(folder), "--trainer", "uniform", "--set", "mode=uniform-state", "--preset",
                "micro", "--steps", "1", "--eval-limit", "0", "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "--init" in (err := capsys.readouterr().err) and "q_proj.weight" in err
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_a_folder_without_a_tokenizer_is_refused_saying_what_to_copy(tmp_path, capsys):
    """AutoTokenizer would build Gemma's tokenizer from nothing: 5 tokens, every prompt one id."""
    folder = save_folder(tmp_path / "dg")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    capsys.readouterr()
    assert cli(["run", "--model", str(folder), "--strategy", "uniform-eb", "--limit", "2", "--store",
                str(tmp_path / "r.db")]) == 2
    assert "holds no tokenizer (tokenizer.json or tokenizer.model)" in capsys.readouterr().err
    assert cli(["train", "--init", str(folder), "--trainer", "uniform", "--set", "mode=uniform-state", "--preset",
                "micro", "--steps", "1", "--eval-limit", "0", "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "holds no tokenizer" in capsys.readouterr().err


def test_the_length_check_reads_the_text_configs_positions():
    """DiffusionGemma keeps max_position_embeddings in text_config: 96 is the limit of a 96-position model,
    and a released checkpoint's 131072 is not capped at the 4096 of models that declare none."""
    from workbench.decoding.limits import LengthError, check_lengths, max_positions

    model = build_random_diffusion_gemma(64, seed=3)
    model.config.text_config.max_position_embeddings = 96
    denoiser = DiffusionGemmaDenoiser(model)
    assert max_positions(denoiser) == (96, "its config's text_config.max_position_embeddings")
    check_lengths(denoiser, [[5] * 64], 32)  # exactly full
    with pytest.raises(LengthError, match=r"100 tokens .* at most 96 \(its config's text_config"):
        check_lengths(denoiser, [[5] * 100], 32)
    model.config.text_config.max_position_embeddings = 131072
    assert max_positions(denoiser)[0] == 131072


def test_float64_decodes_and_equals_generate_in_float64():
    """torch's grouped matrix product (the MoE experts' default) has no float64 kernel: in float64 the adapter
    switches the experts to transformers' eager loop, and back when cast again."""
    model = build_random_diffusion_gemma(128, seed=4)
    denoiser = DiffusionGemmaDenoiser(model).to(torch.float64)
    assert model.dtype == torch.float64 and model.config._experts_implementation == "eager"
    prompt = torch.randint(4, 128, (1, 5), generator=torch.Generator().manual_seed(0))
    settings = dict(max_denoising_steps=6)
    expected = reference(model, prompt, sample_seed(0, 0), 24, **settings)
    assert workbench(denoiser, prompt, 0, 24, "sample", **settings)[1] == expected
    denoiser.to(torch.float32)
    assert model.config._experts_implementation == "grouped_mm"


def test_training_takes_the_canvas_length_and_refuses_another_block(tmp_path, capsys):
    folder = save_folder(tmp_path / "dg16", canvas=16)
    common = ["train", "--init", str(folder), "--trainer", "uniform", "--set", "mode=uniform-state", "--steps", "1",
              "--eval-limit", "0", "--quiet", "--preset"]
    capsys.readouterr()
    assert cli([*common, "micro", "--block-size", "8", "--out", str(tmp_path / "b8")]) == 2
    assert ("canvas holds 16 positions" in (err := capsys.readouterr().err) and "train blocks of 8" in err
            and "--block-size 16" in err)
    assert cli([*common, "micro", "--out", str(tmp_path / "own")]) == 0
    assert json.loads((tmp_path / "own" / "training.json").read_text())["train_config"]["block_size"] == 16
    capsys.readouterr()
    assert cli([*common, "post", "--out", str(tmp_path / "post")]) == 0
    assert "block size 16: the canvas length of the DiffusionGemma --init (not the preset's 8)" in \
        capsys.readouterr().err  # the preset's block 8 gives way, and says so


def test_the_cli_decodes_whole_canvases_on_diffusion_gemma_and_keys_only_that(folder, tmp_path, capsys):
    """`--last-block` defaults to the model's (DiffusionGemma: full; others: short); a run that decodes as
    before the field existed (short, or no part-filled last block) keeps the run key it had."""
    from workbench.results.evaluate import decode_key

    store = str(tmp_path / "r.db")
    common = ["run", "--model", str(folder), "--strategy", "uniform-eb", "--limit", "2", "--gen-length", "12",
              "--store", store, "--json"]
    assert cli(common) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["last_block"] == "full" and out["gen_length"] == 12 and out["nfe"] == 12  # 2 canvases of 6 steps
    assert cli([*common, "--last-block", "short"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["last_block"] == "short" and out["from_store"] == 0  # another run
    assert cli(["run", "--limit", "2", "--gen-length", "12", "--store", store, "--json"]) == 0  # the shipped model
    assert json.loads(capsys.readouterr().out)["last_block"] == "short"
    config = DecodeConfig(block_size=8, max_new_tokens=12)  # keyed only where it changes what is decoded
    assert "last_block" not in decode_key(config) and decode_key(attrs.evolve(config, last_block="full"))[
        "last_block"] == "full"
    assert "last_block" not in decode_key(DecodeConfig(block_size=8, max_new_tokens=16, last_block="full"))
