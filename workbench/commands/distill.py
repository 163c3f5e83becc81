"""Self-distillation data: decode a task's training prompts with one strategy on one model, write a JSONL.

`workbench distill --strategy threshold --tau 0.95 --model PATH --count 32000 --out data.jsonl` decodes the
first N distinct training prompts (never a held-out one) and keeps the outputs the task checks as correct
(`--keep all` keeps every output), as DMax builds its OPUT data from the base model's own generations;
`workbench train --data data.jsonl` trains on it. A sidecar `data.meta.json` says where the data comes from.
Interrupted? Rerun the same command: prompts already written are skipped (see `workbench.training.distill`).
Without --model / --trainer the shipped `base` model decodes.
"""

from __future__ import annotations

import os
import shlex
import sys

from workbench.commands.common import (
    add_model_arguments, add_placement_arguments, add_quiet_argument, decode_config, placed_model, resolve_model,
    showing_progress, strategy_params, task_for,
)

HELP = "decode a task's training prompts with a model into a self-distilled training set (JSONL)"


def add_arguments(parser) -> None:
    parser.add_argument("--strategy", default="threshold", help="decoding strategy (default threshold)")
    parser.add_argument("--tau", type=float, default=None,
                        help="the strategy's main threshold (DMax distils with threshold 0.95)")
    add_model_arguments(parser)
    parser.add_argument("--out", required=True, metavar="FILE.jsonl", help="data file (appended to on resume)")
    parser.add_argument("--count", type=int, default=32000, metavar="N", help="distinct training prompts to decode")
    parser.add_argument("--keep", choices=("correct", "all"), default="correct",
                        help="correct: keep outputs the task checks as right (rejects go to FILE.rejected.jsonl)")
    group = parser.add_argument_group("decoding")
    group.add_argument("--task", default=None, help="task name or jsonl:PATH (default: the model's training task)")
    group.add_argument("--seed", type=int, default=0, help="seed of the training-prompt stream (and of sampling)")
    group.add_argument("--block-size", type=int, default=None, metavar="N", help="block length (default: the model's)")
    group.add_argument("--gen-length", type=int, default=None, metavar="N", help="generated positions (default: the task's)")
    group.add_argument("--batch-size", type=int, default=128, metavar="N", help="prompts decoded together")
    group.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    group.add_argument("--plugin", action="append", default=[], metavar="FILE.py", help="override plugin file")
    group.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a strategy parameter")
    add_placement_arguments(group)
    add_quiet_argument(parser)


def display_path(path: str) -> str:
    """`path` relative to the working directory when it lies below it (a shipped model reads
    `workbench/default_models/base` on every machine), else as given."""
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path
    except ValueError:  # another drive (Windows)
        return path


def strategy_defaults(name: str) -> dict:
    """The strategy's parameter defaults (recorded beside the given `params`, which alone identify the data,
    so that data distilled before a new parameter existed still resumes)."""
    from workbench.decoding.registry import available_strategies

    return next((dict(info.params) for info in available_strategies() if info.name == name), {})


def main(args) -> int:
    from workbench.decoding.registry import decision_providers, make_manager
    from workbench.results.store import checkpoint_hash
    from workbench.training.distill import distill, meta_path

    if args.count <= 0:
        raise ValueError(f"--count {args.count}: give a positive number of prompts")
    if args.batch_size <= 0:
        raise ValueError(f"--batch-size {args.batch_size}: give a positive number")
    if not args.model and not args.trainer:
        args.trainer = "base"  # DMax distils the model it post-trains: here the shipped base
    params = strategy_params(args)
    manager = make_manager(args.strategy, params=params, plugin_files=args.plugin)
    model_path, _ = resolve_model(args)
    model, tokenizer, precision = placed_model(model_path, args)
    task_name, task = task_for(args, model_path)
    config = decode_config(args, model, task)
    source = {"model": display_path(model_path), "model_hash": checkpoint_hash(model_path), "strategy": args.strategy,
              "params": dict(sorted(params.items())), "strategy_defaults": strategy_defaults(args.strategy),
              "plugins": list(args.plugin),
              "decisions": decision_providers(manager), "precision": precision,
              "decode": {"block_size": config.block_size, "gen_length": config.max_new_tokens,
                         "temperature": config.temperature,
                         # only where it changes the decodes (a file written before it keeps its identity)
                         **({"last_block": "full"} if config.decoded_length != config.max_new_tokens else {})},
              "command": "workbench " + " ".join(shlex.quote(a) for a in sys.argv[1:])}

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    show = showing_progress(args)
    with Progress(TextColumn(f"distill {args.strategy}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("kept {task.fields[kept]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                  disable=not show, transient=True) as bar:
        job = bar.add_task("distill", total=args.count, kept=0)
        meta = distill(model, tokenizer, task, manager, config, args.out, count=args.count, seed=args.seed,
                       source=source, keep_correct_only=args.keep == "correct", batch_size=args.batch_size,
                       on_batch=lambda kept, decoded: bar.update(job, completed=decoded, kept=kept))
    share = meta["kept"] / max(1, meta["decoded"])
    print(f"{meta['kept']} of {meta['decoded']} decodes kept ({100 * share:.1f} %"
          f"{' checked correct' if meta['filtered_by_correctness'] else ', unfiltered'}) of {task_name} training "
          f"prompts in {args.out}; metadata in {meta_path(args.out)}")
    return 0


__all__ = ["DistillError", "main", "add_arguments", "HELP"]
