"""Argument groups and helpers several sub-commands share (model choice, strategy choice, decoding)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from workbench.models.folders import DEFAULT_TRAINER, default_model_path


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--trainer", default=None,
                       help=f"shipped default model post-trained this way (mdlm, uniform, oput, base; default {DEFAULT_TRAINER})")
    group.add_argument("--model", default=None, metavar="PATH", help="a model folder instead of a shipped one")
    add_trust_argument(group)


def add_trust_argument(group) -> None:
    group.add_argument("--trust-remote-code", action="store_true",
                       help="allow a model folder whose config names its own Python code (auto_map: LLaDA, Dream, "
                            "LLaDA-2.0); that code runs with your permissions, so only for folders you trust")


def add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    from workbench.decoding.choices import CACHE_MODES

    group = parser.add_argument_group("decoding")
    group.add_argument("--task", default=None, help="task name or jsonl:PATH (default: the model's training task)")
    group.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate the first N examples")
    group.add_argument("--block-size", type=int, default=None, metavar="N", help="block length (default: the model's)")
    group.add_argument("--gen-length", type=int, default=None, metavar="N", help="generated positions (default: the task's)")
    group.add_argument("--batch-size", type=int, default=64, metavar="N", help="prompts decoded together")
    group.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                       help="override plugin file (repeatable); it answers only the hooks it implements")
    group.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a strategy parameter")
    group.add_argument("--cache", choices=CACHE_MODES, default="auto",
                       help="KV cache: auto = exact prefix cache on block-causal models, none otherwise; "
                            "prefix/dual = Fast-dLLM approximate caches on bidirectional models")
    add_canvas_arguments(group)
    add_chat_template_argument(group)
    add_placement_arguments(group)
    group.add_argument("--store", default="workbench-results.db", metavar="FILE",
                       help="results store; finished samples of the same configuration are reused")


def add_canvas_arguments(group) -> None:
    """--noise, --rng, --max-forwards, --last-block: what open positions are fed, how random draws are shared,
    the cap, the length of a last block that --gen-length leaves part-filled."""
    from workbench.decoding.choices import LAST_BLOCKS, NOISE_KINDS, RNG_MODES

    group.add_argument("--noise", choices=NOISE_KINDS, default="auto",
                       help="what open positions are fed: mask = the mask embedding (absorbing-state), uniform = "
                            "random tokens redrawn every step (uniform-state), auto = the model's kind")
    group.add_argument("--rng", choices=RNG_MODES, default="sample",
                       help="random draws: sample = one generator per sample (a sample decodes alike in any batch), "
                            "batch = one per batch (DiffusionGemma generate's draw order)")
    group.add_argument("--max-forwards", type=int, default=None, metavar="N",
                       help="forward cap per block (default: the model's, else the block size)")
    group.add_argument("--last-block", choices=LAST_BLOCKS, default=None,
                       help="when --gen-length is not a multiple of the block: short = decode only the remaining "
                            "positions, full = decode a whole block and cut the output (DiffusionGemma's generate); "
                            "default: the model's (full on DiffusionGemma), else short")


def add_chat_template_argument(group) -> None:
    group.add_argument("--chat-template", choices=("auto", "on", "off"), default="auto",
                       help="render each prompt as a user turn with the tokenizer's chat template: auto = when the "
                            "model family's profile says so (LLaDA, Dream, LLaDA-2.0 instruct checkpoints) and the "
                            "tokenizer has a template; off for base checkpoints")


def chat_template_for(args, model, tokenizer) -> bool:
    """Whether prompts get the tokenizer's chat template (`--chat-template`); ValueError for `on` without one."""
    choice = getattr(args, "chat_template", "auto")
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if choice == "off":
        return False
    if choice == "on":
        if not has_template:
            raise ValueError("--chat-template on: the model's tokenizer has no chat template (a `chat_template` in "
                             "tokenizer_config.json or a chat_template.jinja file); use --chat-template off")
        return True
    profile = getattr(model, "profile", None)
    return bool(has_template and getattr(profile, "chat_template", False))


def add_placement_arguments(group) -> None:
    from workbench.runtime.placement import DEVICES, DTYPES

    group.add_argument("--device", choices=DEVICES, default="auto",
                       help="where to decode: auto = the GPU when CUDA is available, else the CPU")
    group.add_argument("--dtype", choices=("auto", *DTYPES), default="auto",
                       help="weight dtype: auto = bfloat16 on a GPU (with TF32), float32 on the CPU")


def placed_model(path: str, args):
    """(model, tokenizer, placement label): the model at `path` on --device in --dtype. A real checkpoint
    takes a while to read: a spinner says so on a terminal, unless --quiet."""
    from workbench.models.loading import load_model
    from workbench.runtime.placement import place, resolve

    placement = resolve(args.device, args.dtype)
    with working(f"loading {path} ({placement.label})", args):
        model, tokenizer = load_model(path, trust_remote_code=getattr(args, "trust_remote_code", False))
        return place(model, placement), tokenizer, placement.label


def showing_progress(args) -> bool:
    """Whether a command draws progress: on a terminal (stderr), unless --quiet (or --json) asks for silence."""
    import sys

    return not (getattr(args, "quiet", False) or getattr(args, "json", False)) and sys.stderr.isatty()


def working(message: str, args):
    """A spinner with `message` on stderr while a block runs (a context manager); nothing when
    `showing_progress(args)` is False."""
    from contextlib import nullcontext

    if not showing_progress(args):
        return nullcontext()
    from rich.console import Console

    return Console(stderr=True).status(message)


def add_quiet_argument(parser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars or spinners (stderr stays for errors)")


def resolve_model(args) -> tuple[str, str | None]:
    """(model path, trainer label) from --model / --trainer."""
    if args.model:
        return args.model, args.trainer
    trainer = args.trainer or DEFAULT_TRAINER
    return str(default_model_path(trainer)), trainer


def model_training_info(path: str) -> dict:
    info = Path(path) / "training.json"
    return json.loads(info.read_text()) if info.is_file() else {}


def parse_sets(pairs: list[str]) -> dict:
    """`--set name=value` pairs; values parsed as JSON when they can be (numbers, booleans), else strings."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--set {pair!r}: write --set name=value, e.g. --set tau_acc=0.9")
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError:
            out[name] = value
        except RecursionError:  # nested deeper than Python's parser goes: no parameter takes that
            raise ValueError(f"--set {name}=...: the value is nested too deeply to read") from None
    return out


def strategy_params(args) -> dict:
    """The strategy's parameters from `--set name=value` and `--tau` (mapped to its main threshold)."""
    from workbench.decoding.registry import strategy_threshold_param

    import math

    # The range is the strategy's: a probability threshold refuses 1.5 naming its parameter (unit_interval),
    # while an entropy budget (eb's gamma) or a logit gap (prophet's) may exceed 1.
    if args.tau is not None and not math.isfinite(args.tau):
        raise ValueError(f"--tau {args.tau}: give a finite number (the strategy's main threshold)")
    params = parse_sets(args.set)
    if args.tau is not None:
        params[strategy_threshold_param(args.strategy)] = args.tau
    return params


def task_for(args, model_path: str):
    """(task name, task): --task, else the task the model was trained on, else the default task."""
    from workbench.tasks import DEFAULT_TASK, load_task

    name = args.task or model_training_info(model_path).get("train_config", {}).get("task") or DEFAULT_TASK
    return name, load_task(name)


def check_positive(value: int | None, flag: str, what: str) -> None:
    """ValueError for a count option given as 0 or less (None = not given, the default applies)."""
    if value is not None and value <= 0:
        raise ValueError(f"{flag} {value}: give a positive number of {what}")


def check_decoding_counts(args) -> None:
    """--block-size, --gen-length, --batch-size, --limit must be positive when given: called before any
    model loads, so a typo costs nothing."""
    check_positive(getattr(args, "block_size", None), "--block-size", "positions per block")
    check_positive(getattr(args, "gen_length", None), "--gen-length", "generated positions")
    check_positive(getattr(args, "batch_size", None), "--batch-size", "prompts decoded together")
    check_positive(getattr(args, "limit", None), "--limit", "examples")


def cache_mode(model, asked: str) -> str:
    """The cache mode the model runs for `--cache asked` (what the run is keyed on): `auto` resolved to `none` or
    `prefix`; `prefix` / `dual` refused (CacheUnavailable, exit 2) where the model cannot do them. A model that
    brings its own runner (DiffusionGemma) keeps the asked mode: its runner decides."""
    from workbench.decoding.cache import resolve_mode

    if callable(getattr(model, "make_runner", None)):
        return asked
    return resolve_mode(model, asked)


def decode_config(args, model, task, *, seed: int | None = None):
    """DecodeConfig from the decoding arguments; block size defaults to the model's own. `seed` overrides
    --seed (ablate's cells each carry one of --seeds)."""
    from workbench.decoding.state import DecodeConfig

    check_decoding_counts(args)  # 0 is refused, never read as "not given"
    # A model may say how it decodes by default (DiffusionGemma: its canvas length and denoising steps).
    own = model.decode_defaults() if callable(getattr(model, "decode_defaults", None)) else {}
    block = args.block_size if args.block_size is not None else (
        own.get("block_size") or getattr(getattr(model, "config", None), "block_size", None) or 32)
    cap = getattr(args, "max_forwards", None)
    if cap is not None and cap <= 0:
        raise ValueError(f"--max-forwards {cap}: give a positive number of forwards per block")
    gen_length = args.gen_length if args.gen_length is not None else task.response_len
    return DecodeConfig(block_size=block, max_new_tokens=gen_length,
                        max_forwards_per_block=cap if cap is not None else own.get("max_forwards_per_block"),
                        temperature=args.temperature, seed=args.seed if seed is None else seed,
                        cache=cache_mode(model, getattr(args, "cache", "auto")), noise=getattr(args, "noise", "auto"),
                        rng=getattr(args, "rng", "sample"),
                        last_block=getattr(args, "last_block", None) or own.get("last_block", "short"))


__all__ = ["strategy_params", "task_for", "decode_config", "add_model_arguments", "add_decoding_arguments", "resolve_model", "load_model", "parse_sets",
           "add_placement_arguments", "add_canvas_arguments", "add_trust_argument", "placed_model", "check_decoding_counts",
           "model_training_info",
           "add_chat_template_argument", "chat_template_for"]


def one_line(err: BaseException) -> str:
    """The message of a user error on one line. attrs validators raise ValueError(message, attribute, ...);
    its str() is a dump of the whole tuple, so wherever it was quoted, only the message is kept."""
    text = str(err)
    for e in (err, err.__cause__, err.__context__):
        if isinstance(e, ValueError) and len(e.args) > 1 and isinstance(e.args[0], str):
            text = text.replace(str(e), e.args[0])
    return " ".join(text.split())
