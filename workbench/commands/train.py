"""Train a model with one objective (`--trainer mdlm|uniform|oput`) and write it, with a model card, to --out.

From scratch, or post-training a model folder given with --init. Periodic checkpoints let an interrupted
run resume: rerun the same command. Under torchrun (`torchrun --nproc_per_node N -m workbench train ...`)
the loop runs DDP (or FSDP with --fsdp): --batch-size is the global batch, split over the N processes,
so the run matches a one-process run; it resumes from its checkpoint with any N.
"""

from __future__ import annotations

import shlex
import sys

import attrs

from workbench.commands.common import add_quiet_argument, add_trust_argument, parse_sets
from workbench.training.config import PRESETS, TrainConfig

HELP = "train or post-train a model (mdlm, uniform, oput)"
# What Ctrl-C leaves behind (printed by the CLI on KeyboardInterrupt).
INTERRUPTED = ("interrupted; the last checkpoint (written every --checkpoint-every steps) is kept in --out: "
               "rerun the same command to resume from it")


def add_arguments(parser) -> None:
    parser.add_argument("--trainer", default="mdlm", help="training objective (see `workbench list`)")
    parser.add_argument("--task", default=None, help="task to train on (default: the preset's, else choice)")
    parser.add_argument("--init", default=None, metavar="PATH", help="model folder to post-train")
    parser.add_argument("--preset", default=None, choices=sorted(PRESETS), help="a named recipe")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output model folder: new, empty, or this run's own folder (then it resumes)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty --out that is not this run's folder (same-named files are "
                             "replaced; a checkpoint of another configuration is discarded)")
    add_trust_argument(parser)
    parser.add_argument("--data", default=None, metavar="FILE.jsonl", help="self-distilled training data")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a parameter of the trainer, e.g. --set mask_ratio=0.5 for oput")
    for field in attrs.fields(TrainConfig):
        if field.name in ("trainer", "trainer_params", "task", "data"):
            continue
        flag = "--" + field.name.replace("_", "-")
        kind = bool if field.type in ("bool", bool) else (float if field.type in ("float", float) else int)
        if kind is bool:  # `--bf16` alone means true; `--block-causal false` still works
            parser.add_argument(flag, default=None, nargs="?", const=True,
                                type=lambda s: s.lower() in ("1", "true", "yes"), metavar="BOOL")
        else:
            parser.add_argument(flag, default=None, type=kind, metavar=kind.__name__.upper())
    parser.add_argument("--stop-after", type=int, default=None, metavar="STEP",
                        help="stop after this step, leaving a checkpoint (rerun without it to continue)")
    add_quiet_argument(parser)


def config_from_args(args) -> TrainConfig:
    values = dict(PRESETS.get(args.preset, {}))
    values["trainer"] = args.trainer
    if args.set:
        values["trainer_params"] = parse_sets(args.set)
    if args.task:
        values["task"] = args.task
    if args.data:
        values["data"] = args.data
    if getattr(args, "init", None) and getattr(args, "block_size", None) is None:
        from workbench.training.train import init_canvas_length

        canvas = init_canvas_length(args.init)  # a DiffusionGemma --init trains in its own canvas length
        if canvas is not None:
            if values.get("block_size", canvas) != canvas:
                print(f"block size {canvas}: the canvas length of the DiffusionGemma --init (not the preset's "
                      f"{values['block_size']})", file=sys.stderr)
            values["block_size"] = canvas
    for field in attrs.fields(TrainConfig):
        given = getattr(args, field.name, None)
        if given is not None and field.name not in ("trainer", "trainer_params", "task", "data"):
            values[field.name] = given
    return TrainConfig(**values)


def main(args) -> int:
    from workbench.runtime.distributed import is_main, process_group
    from workbench.training.train import train

    from trainers import make_objective

    cfg = config_from_args(args)
    make_objective(cfg.trainer, **cfg.trainer_params)  # a bad --trainer or --set fails before any model loads
    with process_group():  # joins torchrun's group when launched by it; nothing otherwise
        command = "workbench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        out = train(cfg, args.out, init=args.init, progress=not args.quiet, command=command,
                    stop_after=args.stop_after, overwrite=args.overwrite, trust_remote_code=args.trust_remote_code)
        main_rank = is_main()
    if main_rank:
        done = args.stop_after is None or args.stop_after >= cfg.steps
        print(f"model written to {out}" if done else f"stopped after step {args.stop_after}; checkpoint in {out}")
    return 0
