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

Everything is checked here, before the first request: a bad value raises `ModelArgumentError`, whose one-line
message names the argument as it was written (`tau=2.0`, never `workbench run`'s `--tau`); the lm-eval model
turns it into exit code 2 on the `lm_eval` command line.

Where lm-eval's conventions and `workbench run`'s differ, the model arguments follow lm-eval's:
- `chat_template` left out means off (lm-eval's own `--apply_chat_template` renders prompts); given, it
  works as `--chat-template` does (`on`: one user turn in the tokenizer's chat template, `auto`: as the model
  family's profile says);
- `seed` left out means lm-eval's seed (its `--seed`, read from the torch generator it seeds; see
  `HarnessSetup.run_seed`); given, it wins.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
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


def _optional_bool(instance, attribute, value) -> None:
    if value is not None and not isinstance(value, bool):
        raise ModelArgumentError(f"model argument {attribute.name}={value!r}: give true or false (or leave it out)")


def _known_scheme(instance, attribute, value) -> None:
    from workbench.harness.likelihood import SCHEMES

    if value not in SCHEMES:
        raise ModelArgumentError(f"model argument mc_scheme={value!r}: choose one of {', '.join(SCHEMES)}")


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
        mc_scheme: how the ELBO's mask counts are drawn: `iid` (each sample its own, the unbiased estimate) or
            `llada` (LLaDA's published estimator: evenly spread over each batch of `mc_batch_size`);
            `workbench.harness.likelihood`.
        add_bos_token: None: encode prompts with the tokenizer's own special tokens (its
            `add_special_tokens` default, as lm-eval's HF model does); True: always start with BOS; False: add
            no special tokens (HF's `add_bos_token`).
    """

    mc_samples: int = attrs.field(default=128, validator=_positive_int)
    mc_batch_size: int = attrs.field(default=32, validator=_positive_int)
    mc_scheme: str = attrs.field(default="iid", validator=_known_scheme)
    add_bos_token: bool | None = attrs.field(default=None, validator=_optional_bool)
    check: str = attrs.field(default="none", validator=_known_check)
    answer_field: str = attrs.field(default="answer", validator=attrs.validators.instance_of(str))
    max_batch_size: int | None = attrs.field(default=None, validator=attrs.validators.optional(_positive_int))

    def __attrs_post_init__(self) -> None:
        from workbench.harness.likelihood import check_scheme

        try:
            check_scheme(self.mc_scheme, self.mc_samples, self.mc_batch_size)
        except ValueError as err:
            raise ModelArgumentError(f"model argument {err}") from None


LM_EVAL_ONLY = tuple(f.name for f in attrs.fields(LmEvalOptions))


class _Parser(argparse.ArgumentParser):
    """`workbench run`'s parser, raising instead of printing usage and exiting (lm-eval may run in-process)."""

    def error(self, message):
        # "argument --cache: invalid choice: 'x' (choose from ...)" -> "model argument cache=x: invalid choice
        # (choose from ...)"; "argument --tau: invalid float value: 'x'" -> "model argument tau=x: invalid float value"
        for action in self._actions:
            for option in action.option_strings:
                prefix = f"argument {option}: "
                if message.startswith(prefix):
                    rest = message[len(prefix):]
                    found = re.match(r"(invalid [\w ]+?): '(.*?)'(.*)", rest, re.S)
                    if found:
                        raise ModelArgumentError(f"model argument {action.dest}={found.group(2)}: "
                                                 f"{found.group(1)}{found.group(3)}")
                    raise ModelArgumentError(f"model argument {action.dest}: {rest}")
        raise ModelArgumentError(f"model arguments: {as_model_arguments(message, self)}")


def run_parser() -> _Parser:
    from workbench.commands import run

    parser = _Parser(prog="lm_eval --model workbench", add_help=False)
    run.add_arguments(parser)
    return parser


def run_options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """dest -> action of the `workbench run` options that are model arguments."""
    return {a.dest: a for a in parser._actions if a.option_strings and a.dest not in _NOT_MODEL_ARGS}


def _value_of(action: argparse.Action, word: str) -> bool:
    """Whether `word` reads as a value of the option `action` (so `--tau 2.0` is a flag and its value)."""
    if action.nargs == 0:
        return False
    if action.choices is not None:
        return word in action.choices
    try:
        (action.type or str)(word)
    except (TypeError, ValueError):
        return False
    return True


def as_model_arguments(message: str, parser: argparse.ArgumentParser) -> str:
    """A message of `workbench run`'s code with its flags written as model arguments: `--tau 2.0` -> `tau=2.0`,
    `--block-size 0` -> `block_size=0`, `--set tau_acc=0.9` -> `tau_acc=0.9`, `--plugin F` -> `plugins=F`,
    `--trust-remote-code` -> `trust_remote_code=true`."""
    flags = {option: a for a in parser._actions for option in a.option_strings if option.startswith("--")}

    def rewrite(match: re.Match) -> str:
        flag, value = match.group(1), match.group(2)
        action = flags.get(flag)
        if action is None:
            return match.group(0)
        rest = f" {value}" if value else ""
        if action.dest == "set":
            return value or "NAME=VALUE"
        name = "plugins" if action.dest == "plugin" else action.dest
        if action.nargs == 0:
            return f"{name}=true{rest}"
        if value and _value_of(action, value):
            return f"{name}={value}"
        return f"{name}=...{rest}"

    return re.sub(r"(--[a-z][a-z0-9-]*)(?: ([^\s:;,]+))?", rewrite, message)


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
    (lm-eval's `max_gen_toks` and `temperature`); `user_seed` is None when they left the seed to lm-eval
    (`run_seed`). `chat_template`: whether prompts are rendered as a user turn of the tokenizer's chat template
    (the model argument `chat_template`; off when it is not given).
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
    user_seed: int | None = None
    chat_template: bool = False

    @property
    def name(self) -> str:
        """How errors and summaries name the model: the shipped trainer, else the folder."""
        return f"shipped model {self.trainer!r} ({self.model_path})" if not self.args.model else self.model_path

    @property
    def block_size(self) -> int:
        return self.decode_config(1, 0.0).block_size

    def run_seed(self) -> int:
        """The seed of the run's random draws (sampling, the ELBO's masks): the model argument `seed` when given,
        else lm-eval's. lm-eval hands a model its seed only by seeding torch's global generator (`--seed`'s
        third value, 1234 by default; `simple_evaluate(torch_random_seed=...)`) before the requests, so that
        generator's seed is read: `torch.initial_seed()`. Outside lm-eval's evaluator that is whatever the
        process last passed to `torch.manual_seed` (random when nothing did): give `seed=` there."""
        if self.user_seed is not None:
            return self.user_seed
        import torch

        return int(torch.initial_seed())

    def decode_config(self, gen_length: int, temperature: float, seed: int | None = None) -> DecodeConfig:
        """The DecodeConfig `workbench run` builds from the same options, for this generation length (and
        `seed`, when given, instead of `--seed`'s)."""
        from workbench.commands.common import decode_config

        args = argparse.Namespace(**{**vars(self.args), "gen_length": gen_length, "temperature": temperature})
        return decode_config(args, self.model, SimpleNamespace(response_len=gen_length), seed=seed)

    def spec(self, task: str, gen_length: int, temperature: float, *, seed: int | None = None,
             task_content: dict | None = None) -> RunSpec:
        """The run that records the samples of lm-eval task `task` decoded with these settings.

        `task_content`: the identity of the task's prompts (`workbench.harness.generation.prompt_identity`:
        few-shot examples, system instruction and lm-eval's chat template change it); None keys the run on the
        task's name alone. `chat_template` marks prompts rendered by the model argument `chat_template`."""
        return RunSpec(strategy=self.args.strategy, params=self.params, plugins=tuple(self.args.plugin),
                       trainer=self.trainer, model=self.model_path, model_hash=self.model_hash,
                       task=task, decode=self.decode_config(gen_length, temperature, seed), precision=self.precision,
                       batch_size=self.args.batch_size, chat_template=self.chat_template, task_content=task_content)


def _strategy_error(err: Exception, as_params: list[str], args: argparse.Namespace, parser) -> ModelArgumentError:
    """The ModelArgumentError for an error building the strategy, named after the argument that caused it."""
    from workbench.decoding.catalog import PluginLoadError, UnknownStrategyError

    text = as_model_arguments(str(err), parser)
    unknown = [n for n in as_params if f"has no parameter {n!r}" in str(err) or
               (f"{n!r}" in str(err) and "has no parameter" in str(err))]
    if unknown:
        return ModelArgumentError(
            f"unknown model argument {', '.join(map(repr, unknown))} for --model workbench: not a `workbench "
            f"run` option ({', '.join(sorted(run_options(parser)))}, plugins), not an lm-eval option "
            f"({', '.join(LM_EVAL_ONLY)}), and not a parameter of the strategy ({text})")
    if isinstance(err, UnknownStrategyError):
        return ModelArgumentError(f"model argument strategy={args.strategy}: {text}")
    if isinstance(err, PluginLoadError):
        return ModelArgumentError(f"model argument plugins={os.pathsep.join(args.plugin)}: {text}")
    named = [n for n in as_params if f"parameter {n!r}" in str(err)]
    if named:
        return ModelArgumentError(f"model argument {named[0]}={args_value(args, named[0])}: {text}")
    if args.tau is not None:  # `tau` sets the strategy's main threshold, which the message names
        from workbench.decoding.registry import strategy_threshold_param

        try:
            main = strategy_threshold_param(args.strategy)
        except ValueError:
            main = None
        if main is not None and f"parameter {main!r}" in str(err):
            alias = "" if main == "tau" else f" ({args.strategy}'s {main})"
            return ModelArgumentError(f"model argument tau={args.tau}{alias}: {text}")
    return ModelArgumentError(f"model argument: {text}")


def args_value(args: argparse.Namespace, name: str) -> str:
    """The text `--set name=value` gave for a strategy parameter (for messages)."""
    for pair in args.set:
        key, _, value = pair.partition("=")
        if key == name:
            return value
    return "?"


def setup_from_model_args(kwargs: dict[str, Any]) -> HarnessSetup:
    """Parse and check every model argument, then load and place the model; ModelArgumentError on bad input."""
    from plugins.tracer import RevisionCounter
    from workbench.commands.common import (
        chat_template_for, check_decoding_counts, placed_model, resolve_model, strategy_params,
    )
    from workbench.decoding.registry import make_manager
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
    if args.temperature < 0:
        raise ModelArgumentError(f"model argument temperature={args.temperature}: give 0 (greedy) or more")
    try:
        check_decoding_counts(args)  # block_size, gen_length, max_forwards ... before the model loads
        if args.max_forwards is not None and args.max_forwards < 1:
            raise ValueError(f"--max-forwards {args.max_forwards}: give a positive number of forwards per block")
        params = strategy_params(args)
    except ValueError as err:
        raise ModelArgumentError(f"model argument {as_model_arguments(str(err), parser)}") from None
    try:
        revisions = RevisionCounter()
        manager = make_manager(args.strategy, params=params, plugin_files=args.plugin, extra_plugins=[revisions])
    except ValueError as err:  # unknown strategy or parameter, a bad value, a plugin file that does not load
        raise _strategy_error(err, as_params, args, parser) from None
    try:
        model_path, trainer = resolve_model(args)
        model, tokenizer, precision = placed_model(model_path, args)
    except ValueError as err:  # ModelLoadError: not a folder, no tokenizer, remote code not allowed ...
        which = f"model={args.model}" if args.model else f"trainer={args.trainer}" if args.trainer else "model"
        raise ModelArgumentError(f"model argument {which}: {as_model_arguments(str(err), parser)}") from None
    try:
        chat = chat_template_for(args, model, tokenizer) if "chat_template" in kwargs else False
    except ValueError as err:
        raise ModelArgumentError(f"model argument {as_model_arguments(str(err), parser)}") from None
    if options.add_bos_token and getattr(tokenizer, "bos_token_id", None) is None:
        raise ModelArgumentError(f"model argument add_bos_token=true: the tokenizer of {model_path} has no BOS "
                                 f"token; leave add_bos_token out")
    setup = HarnessSetup(args=args, model=model, tokenizer=tokenizer, manager=manager, revisions=revisions,
                         model_path=model_path, model_hash=checkpoint_hash(model_path), trainer=trainer,
                         precision=precision, params=params, options=options, user_gen_length=args.gen_length,
                         user_temperature=args.temperature if "temperature" in kwargs else None,
                         user_seed=args.seed if "seed" in kwargs else None, chat_template=chat)
    try:  # what only the loaded model can say: a cache mode it cannot run, its own decoding defaults
        setup.decode_config(args.gen_length or 1, args.temperature)
    except ValueError as err:
        raise ModelArgumentError(f"model argument {as_model_arguments(str(err), parser)}") from None
    return setup
