"""lm-eval `--model_args` -> one configured workbench run: model, tokenizer, plugin manager and run specs.

Called once, by `workbench.harness.lm_eval_model.WorkbenchLM.__init__`. The model arguments are `workbench
run`'s own options under their argparse names (`strategy`, `tau`, `trainer`, `model`, `block_size`,
`gen_length`, `cache`, `device`, `dtype`, `batch_size`, `store`, `seed`, `temperature`, `trust_remote_code`, and
whatever `workbench run` grows), parsed by `workbench run`'s own parser, so defaults, accepted values and
messages are the same. `plugins=a.py:b.py` lists override plugin files (`--plugin`, separated by ':' since
lm-eval splits model arguments at commas). Any other name is a parameter of the strategy (`--set name=value`),
checked against the strategy's fields. A few arguments belong to lm-eval alone (`LmEvalOptions`).

lm-eval hands values over already typed ("0.5" -> 0.5, "true" -> True); they are turned back into the
command-line text `workbench run` parses, so `tau=0.5` here and `--tau 0.5` there give the same run key.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from types import SimpleNamespace
from typing import Any

import attrs

from workbench.results.evaluate import RunSpec
from workbench.decoding.state import DecodeConfig

log = logging.getLogger(__name__)
# `workbench run` options that are no model arguments: lm-eval chooses the data (task, limit) and prints.
_NOT_MODEL_ARGS = {"help", "task", "limit", "json", "quiet", "set", "plugin"}


class ModelArgumentError(ValueError):
    """A model argument lm-eval cannot pass on; the message names the argument and the valid choices."""


def _positive_int(instance, attribute, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelArgumentError(f"model argument {attribute.name}={value!r}: give a positive integer")


def _known_check(instance, attribute, value) -> None:
    from workbench.harness.checks import CHECKS, make_check

    try:
        make_check(value, "answer")
    except ValueError as err:
        raise ModelArgumentError(f"model argument check={value!r}: {err}; choose one of {', '.join(CHECKS)} "
                                 f"or a workbench task name") from None


@attrs.frozen(kw_only=True)
class LmEvalOptions:
    """Model arguments that only the lm-eval model has.

    Attributes:
        mc_samples: Monte-Carlo samples of the ELBO per loglikelihood request (LLaDA: 128).
        mc_batch_size: of those, how many share one forward.
        check: the workbench answer check that marks each generated sample right or wrong in the results
            store (`workbench.harness.checks`); lm-eval scores the answers with the task's own metric either way.
        answer_field: the document field the `number` / `exact` checks compare with.
        max_batch_size: cap on the batch size when lm-eval passes `--batch_size auto`.
    """

    mc_samples: int = attrs.field(default=128, validator=_positive_int)
    mc_batch_size: int = attrs.field(default=32, validator=_positive_int)
    check: str = attrs.field(default="none", validator=_known_check)
    answer_field: str = attrs.field(default="answer", validator=attrs.validators.instance_of(str))
    max_batch_size: int | None = attrs.field(default=None, validator=attrs.validators.optional(_positive_int))


LM_EVAL_ONLY = tuple(f.name for f in attrs.fields(LmEvalOptions))


class _Parser(argparse.ArgumentParser):
    """`workbench run`'s parser, raising instead of printing usage and exiting (lm-eval may run in-process)."""

    def error(self, message):
        # "argument --cache: invalid choice: 'x' ..." -> "model argument cache: invalid choice: 'x' ..."
        for action in self._actions:
            for option in action.option_strings:
                message = message.replace(f"argument {option}:", f"model argument {action.dest}:")
        raise ModelArgumentError(message)


def run_parser() -> _Parser:
    from workbench.commands import run

    parser = _Parser(prog="lm_eval --model workbench", add_help=False)
    run.add_arguments(parser)
    return parser


def run_options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """dest -> action of the `workbench run` options that are model arguments."""
    return {a.dest: a for a in parser._actions if a.option_strings and a.dest not in _NOT_MODEL_ARGS}


def _text(value: Any) -> str:
    """A typed value as command-line text (JSON for numbers and booleans, as `--set` parses it)."""
    return value if isinstance(value, str) else json.dumps(value)


def to_argv(kwargs: dict[str, Any], parser: argparse.ArgumentParser) -> tuple[list[str], list[str]]:
    """(argv for `workbench run`'s parser, names taken as strategy parameters) from model arguments."""
    options = run_options(parser)
    argv, strategy_params = [], []
    for name, value in kwargs.items():
        if value is None:
            continue
        if name in ("plugin", "plugins"):
            for path in str(value).split(os.pathsep):
                if path:
                    argv += ["--plugin", path]
        elif name in options:
            action = options[name]
            if action.nargs == 0:  # a flag such as --trust-remote-code
                if value not in (True, False, "true", "false", "True", "False"):
                    raise ModelArgumentError(f"model argument {name}={value!r}: give true or false")
                if value in (True, "true", "True"):
                    argv.append(action.option_strings[0])
            else:
                # str(), not JSON, for the option's own type: `--tau 0.5` and `--device cpu` as typed.
                argv += [action.option_strings[0], value if isinstance(value, str) else str(value)]
        else:
            argv += ["--set", f"{name}={_text(value)}"]
            strategy_params.append(name)
    return argv, strategy_params


def _device(value: Any) -> Any:
    """lm-eval's `--device` (default `cuda:0`, passed even on CPU-only machines) as a workbench `--device`.

    Without CUDA any `cuda*` becomes `auto` (the CPU), as lm-eval's HF model falls back; `cuda:N` becomes
    `cuda` when N is the GPU `workbench.runtime.placement` picks for this process, else an error naming the fix.
    """
    if not isinstance(value, str) or not value.startswith("cuda"):
        return value
    import torch

    if not torch.cuda.is_available():
        log.warning("workbench: device %r asked for, but torch sees no CUDA device; decoding on the CPU", value)
        return "auto"
    if value == "cuda":
        return value
    from workbench.runtime.distributed import local_device

    index = value.partition(":")[2]
    chosen = local_device()
    if chosen.type != "cuda" or not index.isdigit() or int(index) != chosen.index:
        raise ModelArgumentError(f"device {value!r}: the workbench decodes on this process's GPU "
                                 f"({chosen}); choose the GPU with CUDA_VISIBLE_DEVICES={index} and pass device=cuda")
    return "cuda"


def _batch_size(value: Any, cap: int | None) -> Any:
    """lm-eval's `--batch_size auto[:N]` -> the workbench default (64), or `max_batch_size` when smaller."""
    if isinstance(value, str) and value.startswith("auto"):
        return None if cap is None else min(64, cap)
    return value


@attrs.frozen(kw_only=True, eq=False)
class HarnessSetup:
    """A loaded model with its strategy, ready to decode lm-eval requests.

    `user_gen_length` / `user_temperature` are None when the model arguments left them to each request
    (lm-eval's `max_gen_toks` and `temperature`).
    """

    args: argparse.Namespace  # the parsed `workbench run` options
    model: Any
    tokenizer: Any
    manager: Any
    revisions: Any  # plugins.tracer.RevisionCounter registered in `manager`
    model_path: str
    model_hash: str  # `workbench.results.store.checkpoint_hash` of the folder, hashed once (it reads every weight)
    trainer: str | None
    precision: str
    params: dict
    options: LmEvalOptions
    user_gen_length: int | None
    user_temperature: float | None

    @property
    def name(self) -> str:
        """How errors and summaries name the model: the shipped trainer, else the folder."""
        return f"shipped model {self.trainer!r} ({self.model_path})" if not self.args.model else self.model_path

    @property
    def block_size(self) -> int:
        return self.decode_config(1, 0.0).block_size

    def decode_config(self, gen_length: int, temperature: float) -> DecodeConfig:
        """The DecodeConfig `workbench run` builds from the same options, for this generation length."""
        from workbench.commands.common import decode_config

        args = argparse.Namespace(**{**vars(self.args), "gen_length": gen_length, "temperature": temperature})
        return decode_config(args, self.model, SimpleNamespace(response_len=gen_length))

    def spec(self, task: str, gen_length: int, temperature: float) -> RunSpec:
        """The run that records the samples of lm-eval task `task` decoded with these settings.

        lm-eval renders chat templates itself, so the prompts reach the run already rendered."""
        return RunSpec(strategy=self.args.strategy, params=self.params, plugins=tuple(self.args.plugin),
                       trainer=self.trainer, model=self.model_path, model_hash=self.model_hash,
                       task=task, decode=self.decode_config(gen_length, temperature), precision=self.precision,
                       batch_size=self.args.batch_size)


def setup_from_model_args(kwargs: dict[str, Any]) -> HarnessSetup:
    """Parse and check every model argument, then load and place the model; ModelArgumentError on bad input."""
    from plugins.tracer import RevisionCounter
    from workbench.commands.common import placed_model, resolve_model, strategy_params
    from workbench.decoding.registry import StrategyParamError, make_manager
    from workbench.results.store import checkpoint_hash

    kwargs = dict(kwargs)
    try:
        options = LmEvalOptions(**{k: kwargs.pop(k) for k in LM_EVAL_ONLY if k in kwargs})
    except TypeError as err:  # attrs' own type errors
        raise ModelArgumentError(str(err)) from None
    if "device" in kwargs:
        kwargs["device"] = _device(kwargs["device"])
    if "batch_size" in kwargs:
        kwargs["batch_size"] = _batch_size(kwargs["batch_size"], options.max_batch_size)
    parser = run_parser()
    argv, as_params = to_argv(kwargs, parser)
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        raise ModelArgumentError(f"model argument batch_size={args.batch_size}: give a positive integer")
    try:
        params = strategy_params(args)
        revisions = RevisionCounter()
        manager = make_manager(args.strategy, params=params, plugin_files=args.plugin, extra_plugins=[revisions])
    except StrategyParamError as err:
        unknown = [n for n in as_params if f"{n!r}" in str(err)]
        if unknown:
            raise ModelArgumentError(
                f"unknown model argument {', '.join(map(repr, unknown))} for --model workbench: not a `workbench "
                f"run` option ({', '.join(sorted(run_options(parser)))}, plugins), not an lm-eval option "
                f"({', '.join(LM_EVAL_ONLY)}), and not a parameter of the strategy ({err})") from None
        raise ModelArgumentError(str(err)) from None
    except ValueError as err:  # unknown strategy, bad --tau, a plugin file that does not load
        raise ModelArgumentError(str(err)) from None
    model_path, trainer = resolve_model(args)
    model, tokenizer, precision = placed_model(model_path, args)
    return HarnessSetup(args=args, model=model, tokenizer=tokenizer, manager=manager, revisions=revisions,
                        model_path=model_path, model_hash=checkpoint_hash(model_path), trainer=trainer,
                        precision=precision, params=params, options=options, user_gen_length=args.gen_length,
                        user_temperature=args.temperature if "temperature" in kwargs else None)
