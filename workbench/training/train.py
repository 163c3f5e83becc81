"""The one training loop every trainer shares (`workbench train`).

AdamW with linear warmup and cosine decay, gradient clipping, periodic checkpoints from which an
interrupted run resumes without losing finished steps, and a rank-aware setup: launched under torchrun
the model is wrapped in DDP (or FSDP with `fsdp=True`), and only rank 0 writes files.

`batch_size` is the global batch of one optimisation step, whatever the number of processes N: every
rank draws the same global batch from one seeded stream and the same corruption noise (the objective
corrupts the global batch), then trains on its slice of rows. Each copy's loss is divided by the
*global* normaliser and scaled by N, so DDP's gradient average is the one-process gradient and a run
matches the one-process run up to float rounding. The checkpoint holds model, optimizer, generator and
step; the data position is step x batch_size, so a run resumes with another N (or `accumulate`).

The output folder is the run's: a non-empty `out` is written only when it holds a checkpoint of the same
configuration (resume) or with `overwrite=True`, and the checkpoint is read with `torch.load(weights_only=
True)`, which builds tensors and plain data only, so a checkpoint from someone else cannot run code. `init`
must be a local native or DiffusionGemma model folder (nothing is downloaded; remote-code folders need
`trust_remote_code`); a DiffusionGemma folder trains in blocks of its canvas length.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path

import attrs
import torch
import torch.distributed as dist

from trainers import make_objective
from trainers.base import TrainBatch, collate, response_logits, weighted_cross_entropy
from workbench.results.card import evaluation_rows, write_card
from workbench.training.distill import data_record
from workbench.runtime.distributed import local_device, mean_over_ranks, rank_rows
from workbench.models.folders import WeightMismatchError, from_pretrained_strict
from workbench.models.native import NativeDenoiser, NativeDenoiserConfig
from workbench.models.tokenizer import build_char_tokenizer, load_tokenizer
from workbench.tasks import load_task
from workbench.training.config import EXECUTION_FIELDS, PRESETS, TrainConfig  # noqa: F401  (PRESETS: importable here too)

CHECKPOINT = "checkpoint.pt"
_CHECKPOINT_KEYS = {"model", "optimizer", "generator", "step", "history", "config"}


class TrainOutputError(ValueError):
    """`out` or `init` cannot be used for this run; the message says why and what to do."""


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def lr_at(step: int, cfg: TrainConfig) -> float:
    warm = max(1, int(cfg.warmup * cfg.steps))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = (step - warm) / max(1, cfg.steps - warm)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))


def build_model(cfg: TrainConfig, init: str | None, vocab_size: int):
    """The model to train: a native model from scratch or from `init`, or a DiffusionGemma folder (`init`)."""
    if init and _model_type(init) == DIFFUSION_GEMMA:
        from workbench.models.diffusion_gemma import load_diffusion_gemma

        try:
            return load_diffusion_gemma(init)[0]  # a tensor missing from the file is refused, naming it
        except WeightMismatchError as err:
            raise TrainOutputError(f"--init {err}") from None
    if init and _model_type(init) == LLADA:  # weights mapped onto the native model (models/conversion.py)
        from workbench.models.adapters import AdapterError, load_llada_native

        try:
            return load_llada_native(init, trust_remote_code=True).float()  # check_init asked for the trust
        except AdapterError as err:
            raise TrainOutputError(f"--init {err}") from None
    if init:
        try:
            return from_pretrained_strict(NativeDenoiser, init)  # a tensor missing from the file is refused
        except WeightMismatchError as err:
            raise TrainOutputError(f"--init {err}") from None
        except Exception as err:  # safetensors/transformers raise many types for a damaged file
            raise TrainOutputError(f"--init {init}: cannot load its weights ({type(err).__name__}: {err}); the "
                                   f"checkpoint is damaged, copy or train it again") from None
    torch.manual_seed(cfg.seed)
    return NativeDenoiser(
        NativeDenoiserConfig(
            vocab_size=vocab_size, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
            num_heads=cfg.num_heads, block_causal=cfg.block_causal, block_size=cfg.block_size,
        )
    )


def init_tokenizer(init: str | Path):
    """The tokenizer of the `init` folder: a DiffusionGemma folder's own (refused when it has none), else the
    native model's saved tokenizer."""
    if _model_type(init) == DIFFUSION_GEMMA:
        from workbench.models.diffusion_gemma import load_diffusion_gemma_tokenizer

        return load_diffusion_gemma_tokenizer(init)
    return load_tokenizer(init)


def check_init(init: str | Path, *, trust_remote_code: bool = False) -> None:
    """TrainOutputError / ModelLoadError unless `init` is a local folder holding a native model."""
    from workbench.models.folders import read_model_config

    raw = read_model_config(init, trust_remote_code=trust_remote_code)
    model_type = raw.get("model_type")
    if model_type == LLADA:
        from workbench.models.conversion import llada_mapping

        if llada_mapping(raw):  # only a native model can be post-trained; the rest has no training layout here
            raise TrainOutputError(f"--init {init}: this LLaDA checkpoint does not map onto the native model "
                                   f"({'; '.join(llada_mapping(raw))}), the only form of LLaDA workbench train "
                                   f"post-trains; LLaDA-8B-style folders (llama blocks, RMSNorm, RoPE, SiLU, no "
                                   f"biases, no grouped-query attention) do")
        return
    if model_type not in (NativeDenoiserConfig.model_type, DIFFUSION_GEMMA):
        raise TrainOutputError(f"--init {init} is a {model_type or 'untyped'} checkpoint; workbench train "
                               f"post-trains native models (folders written by `workbench train`) and "
                               f"DiffusionGemma folders")


# transformers' DiffusionGemma: trained through its own layout (`DiffusionGemmaDenoiser.training_logits`).
DIFFUSION_GEMMA = "diffusion_gemma"
LLADA = "llada"  # LLaDA checkpoints whose weights map onto the native model


def _model_type(folder: str | Path) -> str | None:
    config = Path(folder) / "config.json"
    return json.loads(config.read_text()).get("model_type") if config.is_file() else None


def init_canvas_length(init: str | Path | None) -> int | None:
    """The canvas length of a DiffusionGemma `init` folder (the block it trains and decodes in); None for any
    other folder, or one whose config.json cannot be read (`check_init` reports that)."""
    try:
        raw = json.loads((Path(init) / "config.json").read_text()) if init else {}
    except (OSError, ValueError):
        return None
    canvas = raw.get("canvas_length") if isinstance(raw, dict) and raw.get("model_type") == DIFFUSION_GEMMA else None
    return canvas if isinstance(canvas, int) and not isinstance(canvas, bool) and canvas > 0 else None


def check_block_size(cfg: TrainConfig, init: str | Path | None) -> None:
    """TrainOutputError when `init` is a DiffusionGemma folder whose canvas length is not `cfg.block_size`: its
    decoder denoises whole canvases, and decoding uses the canvas length, so training other blocks would
    train a layout it never decodes. (`workbench train` without --block-size takes the canvas length.)"""
    canvas = init_canvas_length(init)
    if canvas is not None and cfg.block_size != canvas:
        raise TrainOutputError(f"--init {init} is a DiffusionGemma model whose canvas holds {canvas} positions "
                               f"(canvas_length in its config.json), the block it decodes in, but this run would "
                               f"train blocks of {cfg.block_size} (--block-size, the preset's or the default): "
                               f"pass --block-size {canvas}, or leave --block-size out to train at the canvas "
                               f"length")


def _set_layout(model, cfg: TrainConfig, objective) -> None:
    """Record in a native model's config how it decodes: its block size, and (`noise`) whether it is fed masks
    or random tokens at open positions; other architectures keep their own config."""
    if isinstance(model, NativeDenoiser):
        model.config.block_size = cfg.block_size
        decode_noise = getattr(objective, "decode_noise", None)
        if decode_noise is not None:
            model.config.noise = decode_noise()


def read_checkpoint(path: Path) -> dict:
    """The training state in `path`, loaded with weights_only=True: tensors and plain data, never code."""
    import pickle

    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0][:160]
        raise TrainOutputError(f"{path} holds more than tensors and plain data, so it was not loaded (it could "
                               f"run code: {first}); delete it to start over, or train into a new --out") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise TrainOutputError(f"{path} is damaged ({type(err).__name__}: {err}); delete it to start over, or "
                               f"train into a new --out") from None
    if not isinstance(state, dict) or not _CHECKPOINT_KEYS <= state.keys():
        raise TrainOutputError(f"{path} is not a workbench training checkpoint; delete it or train into a new --out")
    return state


def resume_state(cfg: TrainConfig, out: Path, *, overwrite: bool = False) -> dict | None:
    """The checkpoint to resume from in `out`, or None to start afresh; TrainOutputError when `out` is not
    this run's folder (a file, a non-empty folder without a checkpoint, another configuration's checkpoint)
    and `overwrite` is false."""
    if out.exists() and not out.is_dir():
        raise TrainOutputError(f"--out {out} is a file; give a folder (a new one, or the folder of this "
                               f"training run to resume it)")
    ckpt = out / CHECKPOINT
    if ckpt.is_file():
        try:
            state = read_checkpoint(ckpt)
        except TrainOutputError:
            if overwrite:
                return None  # start over; the first save replaces it
            raise
        if _resumable(state["config"], cfg):
            return state
        if overwrite:
            return None
        defaults = {f.name: f.default for f in attrs.fields(TrainConfig)}
        differ = [k for k, v in attrs.asdict(cfg).items()
                  if k not in EXECUTION_FIELDS and {**defaults, **state["config"]}.get(k) != v]
        raise TrainOutputError(f"{ckpt} was written by a run with another configuration ({', '.join(differ)} "
                               f"differ); use a new --out, or --overwrite to start this run over there")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        names = sorted(p.name for p in out.iterdir())
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        raise TrainOutputError(f"--out {out} is not empty ({shown}) and holds no checkpoint of a training run; "
                               f"train into a new folder, or pass --overwrite to write the model into it "
                               f"(files of the same names are replaced)")
    return None


def train(cfg: TrainConfig, out: str | Path, *, init: str | None = None, progress: bool = True,
          command: str | None = None, stop_after: int | None = None, overwrite: bool = False,
          trust_remote_code: bool = False) -> Path:
    """Train and save a model folder at `out`; resumes from `out/checkpoint.pt` when present.

    `stop_after`: leave after that step with a checkpoint and no model folder (a time-limited job's
    slice of the run; rerun to continue, with any number of processes). `overwrite`: write into a non-empty
    `out` that is not this run's folder (see `resume_state`). `trust_remote_code`: see `check_init`.
    A second process training into the same `out` is refused (`OutputBusy`); rank 0 holds the lock.
    """
    from workbench.runtime.outputs import exclusive_output

    writer = exclusive_output(out, "train") if _dist_info()[0] == 0 else nullcontext()
    with writer:
        return _train(cfg, Path(out), init=init, progress=progress, command=command, stop_after=stop_after,
                      overwrite=overwrite, trust_remote_code=trust_remote_code)


@torch.enable_grad()  # callers (CLI commands, tests) may have turned autograd off
def _train(cfg: TrainConfig, out: Path, *, init, progress, command, stop_after, overwrite, trust_remote_code) -> Path:
    if init:
        check_init(init, trust_remote_code=trust_remote_code)
        check_block_size(cfg, init)
    saved = resume_state(cfg, out, overwrite=overwrite)  # before anything is built: a refusal is instant
    rank, world = _dist_info()
    rows = rank_rows(cfg.batch_size, world, rank, cfg.accumulate)  # refuses a batch it cannot split evenly
    device = local_device()
    if cfg.bf16 and device.type != "cuda":
        raise ValueError("--bf16 is bfloat16 autocast on CUDA and no CUDA device is available; drop --bf16 on CPU")
    objective = make_objective(cfg.trainer, **cfg.trainer_params)
    # An objective that reaches for parameters outside the model's forward cannot run sharded; it says why.
    refusal = getattr(objective, "fsdp_refusal", lambda: None)() if cfg.fsdp else None
    if refusal:
        raise ValueError(refusal)
    if cfg.fsdp and world == 1:
        raise ValueError("--fsdp shards the model over the processes of a torchrun job; launch it with "
                         "`torchrun --nproc_per_node N -m workbench train ...` (N > 1) or drop --fsdp")
    task = load_task(cfg.task)
    tokenizer = init_tokenizer(init) if init else build_char_tokenizer()
    model = build_model(cfg, init, len(tokenizer)).to(device)
    _set_layout(model, cfg, objective)
    if cfg.fsdp:
        _fully_shard(model)  # before the optimizer: it must hold the sharded parameters
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start, history = 0, []
    ckpt_path = out / CHECKPOINT
    # One generator, seeded alike on every rank: all ranks draw the global batch's noise in lockstep.
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 1000)
    if saved is not None:
        _load_state(model, optimizer, saved, cfg)
        gen.set_state(saved["generator"])
        start, history = saved["step"], saved["history"]
        saved = None  # the optimizer holds its own copy now
    if cfg.data:  # before the first step: a line too long for the model fails here, named, not in an allocation
        check_training_data(cfg.data, model, tokenizer, task.response_len)
    stream = _example_stream(cfg, task, skip=start * cfg.batch_size)
    trainable = model
    if world > 1 and not cfg.fsdp:
        trainable = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cfg.bf16 else nullcontext()
    model.train()
    bar = _LossBar(cfg.steps, start, cfg.trainer) if progress and rank == 0 else None
    t0 = time.time()
    last = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    for step in range(start, last):
        # The global batch and its corruption, identical on every rank and to a one-process run.
        batch = _to(collate([next(stream) for _ in range(cfg.batch_size)], tokenizer, task.response_len,
                            model.eos_id, model.pad_id), device)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        with autocast:
            copies = objective.corrupt(model, batch, cfg.block_size, gen)
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for k, part in enumerate(rows):
            final = k == len(rows) - 1  # gradients are averaged over ranks on the last micro-step only
            with _no_sync(trainable, model, cfg, sync=final):
                micro = _rows(batch, part)
                with autocast:
                    # Normalisers stay global; x world undoes DDP's average over ranks (module docstring).
                    loss = world * sum(
                        weighted_cross_entropy(response_logits(trainable, micro, view.noisy, cfg.block_size,
                                                               soft=view.soft), micro.response, view)
                        for view in (copy.rows(part) for copy in copies)
                    )
                loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        optimizer.step()
        history.append(mean_over_ranks(total))  # the global batch's loss
        if bar:
            bar.update(step + 1, loss=sum(history[-50:]) / len(history[-50:]))
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 in (cfg.steps, last):
            _save_checkpoint(ckpt_path, model, optimizer, gen, step + 1, history, cfg)
    if bar:
        bar.close()
    if last < cfg.steps:
        return out
    if cfg.fsdp:  # gather the full weights (a collective) into a plain model for saving and evaluation
        full = _full_state(model, optimizer, cfg)[0]
        model = build_model(cfg, init, len(tokenizer))
        _set_layout(model, cfg, objective)
        if rank == 0:
            model.load_state_dict(full)
    if rank == 0:
        try:
            model.save_pretrained(out)
            tokenizer.save_pretrained(out)
        except Exception as err:  # safetensors reports a full disk with its own error type
            raise _write_failed("the trained model", out, err) from None
        meta = {"train_config": attrs.asdict(cfg), "init": init, "seconds": round(time.time() - t0, 1),
                "final_loss": sum(history[-50:]) / max(1, len(history[-50:])), "loss_history": history[:: max(1, len(history) // 200)],
                "parameters_millions": round(model.num_parameters_millions(), 3), "command": command,
                "data": data_record(cfg.data)}  # which data: path, sha256, distillation metadata
        (out / "training.json").write_text(json.dumps(meta, indent=1))
        rows = []
        if cfg.eval_limit:
            model.eval()
            with torch.no_grad():
                rows = evaluation_rows(model, tokenizer, str(out), cfg.task, cfg.eval_limit, cfg.block_size,
                                       **card_grid(model))
        write_card(out, meta, rows)
    return out


def card_grid(model) -> dict:
    """The model card's grid for a model decoded from random tokens: SPD needs a mask embedding there."""
    from workbench.results.card import CARD_GRID
    from workbench.decoding.loop import canvas_kind
    from workbench.decoding.state import DecodeConfig

    if canvas_kind(model, DecodeConfig()) == "uniform":
        return {"grid": tuple((s, tau) for s, tau in CARD_GRID if s != "spd")}
    return {}


def check_training_data(path: str, model, tokenizer, response_len: int) -> None:
    """ValueError naming the first example of a `--data` file that cannot be trained on: an answer longer than
    the task's response length, or a prompt that, with the response, exceeds the model's positions (a huge
    line would otherwise try to allocate its (L, L) attention, GBs to TBs)."""
    from workbench.decoding.limits import check_lengths, preview
    from workbench.tasks.jsonl import JsonlTask

    examples = JsonlTask(path, match="exact", option="--data FILE.jsonl").examples
    for ex in examples:
        answer = len(tokenizer(ex.answer, add_special_tokens=False)["input_ids"])
        if answer > response_len:
            raise ValueError(f"--data {path}: example {ex.uid + 1} has an answer of {answer} tokens, longer than "
                             f"the task's {response_len} response positions ({preview(ex.answer)}); drop it or "
                             f"train on a task with longer answers")
    prompts = [tokenizer(ex.prompt, add_special_tokens=False)["input_ids"] for ex in examples]
    check_lengths(model, prompts, response_len, names=[f"--data {path}: example {ex.uid + 1} "
                                                       f"({preview(ex.prompt)})" for ex in examples])


def _example_stream(cfg: TrainConfig, task, skip: int):
    # One stream for all ranks (the global batches); rank 0 of earlier versions drew the same one.
    if cfg.data:
        from workbench.tasks.jsonl import JsonlTask

        source = JsonlTask(cfg.data, match="exact", option="--data FILE.jsonl")
        stream = source.train_stream(cfg.seed * 7919)
    else:
        stream = task.train_stream(cfg.seed * 7919)
    # Resume draws the same examples an uninterrupted run would have seen next.
    for _ in range(skip):
        next(stream)
    return stream


def _save_checkpoint(path: Path, model, optimizer, gen, step, history, cfg) -> None:
    """Rank 0 writes the full state; under FSDP every rank must call this (gathering is a collective)."""
    if cfg.fsdp:
        model_state, optim_state = _full_state(model, optimizer, cfg)
    elif _dist_info()[0] == 0:
        model_state, optim_state = model.state_dict(), optimizer.state_dict()
    if _dist_info()[0] != 0:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    try:
        torch.save({"model": model_state, "optimizer": optim_state, "generator": gen.get_state(),
                    "step": step, "history": history, "config": attrs.asdict(cfg)}, tmp)
    except (OSError, RuntimeError) as err:  # torch's zip writer reports a full disk as a RuntimeError
        tmp.unlink(missing_ok=True)
        raise _write_failed(f"the checkpoint of step {step}", path, err) from None
    os.replace(tmp, path)  # atomic: a kill during the save never leaves a half-written checkpoint


def _write_failed(what: str, path: Path, err: Exception) -> TrainOutputError:
    """One line for a write that failed on a full, read-only or missing disk; the last checkpoint stays."""
    import errno
    import shutil

    try:
        full = getattr(err, "errno", None) == errno.ENOSPC or shutil.disk_usage(path.parent).free < (1 << 20)
    except OSError:
        full = False
    reason = "the disk is full" if full else f"{type(err).__name__}: {err}"
    return TrainOutputError(f"cannot write {what} to {path} ({reason}); the last complete checkpoint is kept: "
                            f"free some space or choose a writable --out, then rerun the same command to resume")


def _resumable(saved: dict, cfg: TrainConfig) -> bool:
    """Same run: every field equal but the execution ones (a field missing from an older checkpoint had
    its default then)."""
    defaults = {f.name: f.default for f in attrs.fields(TrainConfig)}
    saved = {**defaults, **saved}
    return all(saved.get(k) == v for k, v in attrs.asdict(cfg).items() if k not in EXECUTION_FIELDS)


def _load_state(model, optimizer, state: dict, cfg: TrainConfig) -> None:
    if cfg.fsdp:  # full (unsharded) state dicts keyed by parameter name; each rank keeps its shard
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"],
                       options=StateDictOptions(full_state_dict=True))
    else:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])


def _full_state(model, optimizer, cfg: TrainConfig) -> tuple[dict, dict]:
    """Full model and optimizer state of an FSDP model on rank 0 (empty dicts elsewhere); a collective."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions, get_model_state_dict, get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options), get_optimizer_state_dict(model, optimizer, options=options)


def _fully_shard(model) -> None:
    """FSDP2: each transformer layer is one sharded unit (gathered only for its own forward), then the rest."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(local_device().type, (_dist_info()[1],))
    for layer in getattr(model, "layers", []):
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)


def _no_sync(trainable, model, cfg: TrainConfig, sync: bool):
    """Context of one micro-step: without `sync`, skip the gradient reduction (DDP `no_sync`, FSDP2's switch)."""
    if cfg.fsdp:
        model.set_requires_gradient_sync(sync)
        return nullcontext()
    if sync or not hasattr(trainable, "no_sync"):
        return nullcontext()
    return trainable.no_sync()


def _to(batch: TrainBatch, device: torch.device) -> TrainBatch:
    return TrainBatch(*(t.to(device) for t in attrs.astuple(batch, recurse=False)))


def _rows(batch: TrainBatch, part: slice) -> TrainBatch:
    return TrainBatch(*(t[part] for t in attrs.astuple(batch, recurse=False)))


class _LossBar:
    """A rich progress bar showing the running loss."""

    def __init__(self, total: int, start: int, label: str):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.p = Progress(TextColumn(f"train {label}"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn())
        self.p.start()
        self.task = self.p.add_task("train", total=total, completed=start, loss=float("nan"))

    def update(self, completed: int, loss: float) -> None:
        self.p.update(self.task, completed=completed, loss=loss)

    def close(self) -> None:
        self.p.stop()
