"""Trainers: what each objective corrupts and where its loss falls; the shared loop trains, checkpoints,
resumes without losing steps, and writes a model that `workbench run` decodes."""

from __future__ import annotations

import json

import pytest
import torch

from trainers import TRAINERS, make_objective
from trainers.base import answer_plus_eos_block, collate, response_logits
from workbench.models.tokenizer import FIRST_ORDINARY_ID
from workbench.cli import main as cli
from workbench.models.native import build_random_model
from workbench.models.tokenizer import build_char_tokenizer
from workbench.tasks import load_task
from workbench.training.train import PRESETS, TrainConfig, TrainOutputError, train

BLOCK = 8


@pytest.fixture(scope="module")
def setup():
    tokenizer = build_char_tokenizer()
    model = build_random_model(len(tokenizer), seed=0, hidden_size=32, num_layers=2, num_heads=2)
    task = load_task("choice")
    examples = task.eval_split(16)
    batch = collate(examples, tokenizer, task.response_len, model.eos_id, model.pad_id)
    return model, batch


def test_mdlm_masks_only_where_it_weights_and_weights_one_over_t(setup):
    model, batch = setup
    (copy,) = make_objective("mdlm").corrupt(model, batch, BLOCK, torch.Generator().manual_seed(0))
    masked = copy.noisy == model.mask_id
    assert torch.equal(masked, copy.weights > 0)
    assert torch.equal(copy.noisy[~masked], batch.response[~masked])
    rows = copy.weights.max(-1).values[masked.any(-1)]
    assert (rows >= 1.0).all()  # 1/t with t <= 1
    assert copy.normaliser == batch.response.numel()


def test_oput_fills_masks_with_the_models_own_greedy_prediction(setup):
    model, batch = setup
    x_m, x_p = make_objective("oput").corrupt(model, batch, BLOCK, torch.Generator().manual_seed(1))
    masked = x_m.noisy == model.mask_id
    assert 0.6 < masked.float().mean() < 0.9  # fixed ratio 0.75
    with torch.no_grad():
        predicted = response_logits(model, batch, x_m.noisy, BLOCK).argmax(-1)
    assert torch.equal(x_p.noisy, torch.where(masked, predicted, x_m.noisy))
    expected = answer_plus_eos_block(batch, BLOCK)
    assert torch.equal(x_m.weights, expected) and torch.equal(x_p.weights, expected)
    # loss on every answer position plus exactly the first B trailing EOS positions
    assert (expected.sum(-1) == torch.clamp(batch.answer_len + BLOCK, max=batch.response.shape[1])).all()


def test_uniform_fills_masks_with_random_ordinary_tokens(setup):
    model, batch = setup
    x_m, x_u = make_objective("uniform").corrupt(model, batch, BLOCK, torch.Generator().manual_seed(2))
    masked = x_m.noisy == model.mask_id
    assert (x_u.noisy[masked] >= FIRST_ORDINARY_ID).all() and (x_u.noisy != model.mask_id).all()
    assert torch.equal(x_u.noisy[~masked], batch.response[~masked])
    assert len(set(x_u.noisy[masked].tolist())) > 10  # spread over the vocabulary, not one token


def test_block_causal_layout_hides_later_noisy_blocks(setup):
    model, batch = setup
    noisy = batch.response.clone()
    logits = response_logits(model, batch, noisy, BLOCK)
    later = noisy.clone()
    later[:, BLOCK:] = model.mask_id  # change only the second block's noisy input
    again = response_logits(model, batch, later, BLOCK)
    assert torch.allclose(logits[:, :BLOCK], again[:, :BLOCK], atol=1e-6)
    assert not torch.allclose(logits[:, BLOCK:], again[:, BLOCK:], atol=1e-6)


def test_unknown_trainer_lists_the_valid_names():
    with pytest.raises(ValueError, match="choose one of"):
        make_objective("nosuch")


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_micro_preset_trains_every_trainer_and_the_loss_falls(trainer, tmp_path):
    cfg = TrainConfig(trainer=trainer, **{**PRESETS["micro"], "eval_limit": 0})
    out = train(cfg, tmp_path / trainer, progress=False)
    history = json.loads((out / "training.json").read_text())["loss_history"]
    assert sum(history[-5:]) / 5 < sum(history[:5]) / 5
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    cfg = TrainConfig(trainer="oput", **{**PRESETS["micro"], "steps": 12, "checkpoint_every": 4, "eval_limit": 0})
    whole = train(cfg, tmp_path / "whole", progress=False)
    train(cfg, tmp_path / "split", progress=False, stop_after=8)  # an interruption after step 8
    assert not (tmp_path / "split" / "model.safetensors").exists()
    resumed = train(cfg, tmp_path / "split", progress=False)
    from safetensors.torch import load_file

    a, b = load_file(whole / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_resume_refuses_a_checkpoint_of_another_configuration(tmp_path):
    cfg = TrainConfig(trainer="mdlm", **{**PRESETS["micro"], "steps": 4, "eval_limit": 0})
    train(cfg, tmp_path / "m", progress=False, stop_after=2)
    other = TrainConfig(trainer="mdlm", **{**PRESETS["micro"], "steps": 4, "eval_limit": 0, "lr": 1e-2})
    with pytest.raises(TrainOutputError, match="another configuration"):
        train(other, tmp_path / "m", progress=False)


def test_train_then_run_from_the_cli(tmp_path, capsys):
    out = tmp_path / "model"
    assert cli(["train", "--trainer", "oput", "--preset", "micro", "--out", str(out), "--quiet"]) == 0
    card = (out / "README.md").read_text()
    assert "| trainer | oput |" in card and "workbench train" in card
    capsys.readouterr()
    assert cli(["run", "--strategy", "spd", "--model", str(out), "--limit", "4", "--json",
                "--store", str(tmp_path / "r.db")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["task"] == "choice" and result["n"] == 4


def test_trainer_parameters_reach_the_objective(setup):
    model, batch = setup
    gen = torch.Generator().manual_seed(0)
    for ratio in (0.25, 0.9):
        x_m = make_objective("oput", mask_ratio=ratio).corrupt(model, batch, BLOCK, gen)[0].noisy
        masked = (x_m == model.mask_id).float().mean().item()
        assert abs(masked - ratio) < 0.05


def test_train_set_is_recorded_and_bad_names_are_refused(tmp_path, capsys):
    out = tmp_path / "m"
    assert cli(["train", "--trainer", "oput", "--preset", "micro", "--steps", "2", "--eval-limit", "0",
                "--set", "mask_ratio=0.5", "--out", str(out), "--quiet"]) == 0
    meta = json.loads((out / "training.json").read_text())
    assert meta["train_config"]["trainer_params"] == {"mask_ratio": 0.5}
    assert cli(["train", "--trainer", "oput", "--set", "mask_rate=0.5", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "no parameter 'mask_rate'" in err and "mask_ratio" in err and not (tmp_path / "x").exists()


def test_soft_oput_feeds_the_predicted_copy_spd_hybrids_with_the_prediction_confidence(setup):
    """copy_inputs=soft (a lab variant): x_p holds the greedy prediction (MASK logit removed) and its weight
    p = max softmax at predicted positions, 1 elsewhere; the model is fed p E(top) + (1 - p) e_mask rescaled
    to p ||E(top)|| + (1 - p) ||e_mask|| (written out here, not through the workbench's `hybrid`)."""
    model, batch = setup
    x_m, x_p = make_objective("oput", copy_inputs="soft").corrupt(model, batch, BLOCK, torch.Generator().manual_seed(1))
    masked = x_m.noisy == model.mask_id
    with torch.no_grad():
        logits = response_logits(model, batch, x_m.noisy, BLOCK).float()
    logits[..., model.mask_id] = float("-inf")
    probs = logits.softmax(-1)
    assert x_m.soft is None
    assert torch.equal(x_p.noisy, torch.where(masked, probs.argmax(-1), x_m.noisy))
    assert torch.allclose(x_p.soft, torch.where(masked, probs.amax(-1), torch.ones_like(x_p.soft)))
    assert (x_p.soft[masked] < 1).all()

    with torch.no_grad():
        # weight 1 everywhere is the plain token input, exactly
        ones = torch.ones_like(x_p.soft)
        assert torch.equal(response_logits(model, batch, x_p.noisy, BLOCK, soft=ones),
                           response_logits(model, batch, x_p.noisy, BLOCK))
        # one soft position (row 0, position 2, p = 0.3) against the same input built by hand
        soft = ones.clone()
        soft[0, 2] = 0.3
        got = response_logits(model, batch, x_p.noisy, BLOCK, soft=soft)
        e, m = model.embed.weight[x_p.noisy[0, 2]], model.embed.weight[model.mask_id]
        mixed = 0.3 * e + 0.7 * m
        h = mixed / (mixed.norm() + 1e-6) * (0.3 * e.norm() + 0.7 * m.norm())
        p = batch.prompt.shape[1]
        ids = torch.cat([batch.prompt, x_p.noisy, batch.response], dim=1)
        embeds = model.embed.weight[ids].clone()
        embeds[0, p + 2] = h
        from workbench.models.masks import block_diffusion_training_mask, position_ids_from_valid
        from trainers.base import response_block_ids
        n, r = batch.response.shape
        valid = torch.cat([batch.prompt_valid, torch.ones((n, r), dtype=torch.bool)], dim=1)
        positions = position_ids_from_valid(valid)
        mask = block_diffusion_training_mask(response_block_ids(n, p, r, BLOCK, "cpu"), valid, p)
        want = model(inputs_embeds=embeds, position_ids=torch.cat([positions, positions[:, p:]], 1), attn_mask=mask)
        assert torch.allclose(got, want[:, p:p + r], atol=1e-5)
        assert not torch.allclose(got[0], response_logits(model, batch, x_p.noisy, BLOCK)[0], atol=1e-4)

    # the hybrid is built from the live table: the loss's gradient reaches e_mask through it
    model.zero_grad()
    response_logits(model, batch, x_p.noisy, BLOCK, soft=x_p.soft).logsumexp(-1).sum().backward()
    assert model.embed.weight.grad[model.mask_id].abs().sum() > 0
    model.zero_grad()


def test_soft_oput_trains_from_the_cli_and_bad_copy_inputs_are_refused(tmp_path, capsys):
    out = tmp_path / "m"
    assert cli(["train", "--trainer", "oput", "--preset", "micro", "--steps", "3", "--eval-limit", "0",
                "--set", "copy_inputs=soft", "--out", str(out), "--quiet"]) == 0
    meta = json.loads((out / "training.json").read_text())
    assert meta["train_config"]["trainer_params"] == {"copy_inputs": "soft"}
    assert all(loss == loss for loss in meta["loss_history"])  # finite, not NaN
    assert cli(["train", "--trainer", "oput", "--set", "copy_inputs=fuzzy", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "copy_inputs" in err and "soft" in err and not (tmp_path / "x").exists()


def test_soft_oput_under_fsdp_is_refused_before_anything_is_built(tmp_path):
    """FSDP does not keep the gathered embedding table alive for a backward that reaches it outside the
    forward (2 gloo ranks segfaulted); the objective says so before sharding, DMax's hard copy is unaffected."""
    cfg = TrainConfig(trainer="oput", trainer_params={"copy_inputs": "soft"}, fsdp=True,
                      **{**PRESETS["micro"], "steps": 2, "eval_limit": 0})
    with pytest.raises(ValueError, match="copy_inputs=soft.*--fsdp.*without --fsdp"):
        train(cfg, tmp_path / "soft", progress=False)
    assert not (tmp_path / "soft" / "checkpoint.pt").exists()
    hard = TrainConfig(trainer="oput", fsdp=True, **{**PRESETS["micro"], "steps": 2, "eval_limit": 0})
    with pytest.raises(ValueError, match="launch it with `torchrun"):  # one process: the usual refusal
        train(hard, tmp_path / "hard", progress=False)


def test_uniform_state_mode_corrupts_with_random_tokens_only(setup):
    """mode=uniform-state: no mask anywhere, random ordinary tokens at a per-sequence rate t, loss on every
    answer position plus the EOS block (what a model decoded from a random canvas must repair)."""
    model, batch = setup
    (copy,) = make_objective("uniform", mode="uniform-state").corrupt(model, batch, BLOCK,
                                                                     torch.Generator().manual_seed(3))
    assert not (copy.noisy == model.mask_id).any()
    changed = copy.noisy != batch.response
    assert changed.any() and (copy.noisy[changed] >= FIRST_ORDINARY_ID).all()
    rates = changed.float().mean(-1)
    assert rates.std() > 0.05  # t differs per sequence
    assert torch.equal(copy.weights, answer_plus_eos_block(batch, BLOCK))


def test_a_uniform_state_model_records_its_canvas_and_decodes_from_random_tokens(tmp_path, capsys):
    out = tmp_path / "uniform-state"
    assert cli(["train", "--trainer", "uniform", "--set", "mode=uniform-state", "--preset", "micro",
                "--eval-limit", "2", "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "config.json").read_text())["noise"] == "uniform"
    seen = []

    from workbench.decoding.loop import generate
    from workbench.models.loading import load_model
    from workbench.decoding.registry import hookimpl, make_manager
    from workbench.decoding.state import DecodeConfig

    class Spy:
        @hookimpl
        def on_step_end(self, state):
            seen.append(state.noise)

    model, _ = load_model(out)
    generate(model, [[5, 6]], make_manager("threshold", extra_plugins=[Spy()]), DecodeConfig(block_size=8,
                                                                                             max_new_tokens=8))
    assert seen and set(seen) == {"uniform"}


@pytest.fixture(scope="module")
def diffusion_gemma_folder(tmp_path_factory):
    from workbench.models.diffusion_gemma import build_random_diffusion_gemma

    path = tmp_path_factory.mktemp("dg-init")
    tokenizer = build_char_tokenizer()
    build_random_diffusion_gemma(len(tokenizer) + 6, canvas_length=8, seed=5).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_a_diffusion_gemma_model_trains_with_the_same_objective_code(diffusion_gemma_folder, tmp_path, capsys):
    """`--init` a DiffusionGemma folder (transformers' real architecture, tiny random weights): uniform-state
    training through its encoder-decoder layout lowers the loss, and the result loads and decodes."""
    out = tmp_path / "dg-trained"
    cfg = TrainConfig(trainer="uniform", trainer_params={"mode": "uniform-state"},
                      **{**PRESETS["micro"], "steps": 20, "eval_limit": 2, "lr": 3e-3})
    train(cfg, out, init=str(diffusion_gemma_folder), progress=False)
    meta = json.loads((out / "training.json").read_text())
    history = meta["loss_history"]
    assert sum(history[-5:]) / 5 < sum(history[:5]) / 5
    assert json.loads((out / "config.json").read_text())["model_type"] == "diffusion_gemma"
    capsys.readouterr()
    assert cli(["run", "--strategy", "uniform-eb", "--set", "max_denoising_steps=4", "--max-forwards", "4",
                "--model", str(out), "--limit", "3", "--json", "--store", str(tmp_path / "r.db")]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 3


@pytest.mark.parametrize("trainer", ["mdlm", "oput", "uniform"])
def test_absorbing_objectives_refuse_a_model_without_a_mask_token(diffusion_gemma_folder, tmp_path, trainer):
    cfg = TrainConfig(trainer=trainer, **{**PRESETS["micro"], "steps": 2, "eval_limit": 0})
    with pytest.raises(ValueError, match=r"corrupts answers with the mask token, and this model has none.*"
                                         r"mode=uniform-state"):
        train(cfg, tmp_path / trainer, init=str(diffusion_gemma_folder), progress=False)
