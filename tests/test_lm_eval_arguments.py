"""Model arguments of `--model workbench` (workbench/harness/arguments.py): the same run as `workbench run`.

Needs no lm-eval: the arguments are parsed before anything of lm-eval is used. Values are given typed, as
lm-eval's `simple_parse_args_string` hands them over ("0.5" -> 0.5, "0" -> 0, "true" -> True). Real shipped
models, real plugin files, no fakes.
"""

from __future__ import annotations

import argparse
import re

import pytest

from workbench.commands import run
from workbench.harness.arguments import ModelArgumentError, run_parser, setup_from_model_args
from workbench.decoding.registry import decision_providers


def run_spec(tmp_path, *argv):
    parser = argparse.ArgumentParser()
    run.add_arguments(parser)
    args = parser.parse_args([*argv, "--store", str(tmp_path / "run.db")])
    _, _, _, _, manager, spec, _ = run.prepare(args)
    return spec.config(decision_providers(manager))


@pytest.mark.parametrize("cli, model_args", [
    (["--strategy", "spd", "--tau", "0.5", "--set", "tau_acc=0.9", "--trainer", "oput"],
     {"strategy": "spd", "tau": 0.5, "tau_acc": 0.9, "trainer": "oput"}),
    (["--strategy", "threshold", "--tau", "0", "--trainer", "base", "--block-size", "4", "--cache", "none",
      "--seed", "3", "--dtype", "float64"],
     {"strategy": "threshold", "tau": 0, "trainer": "base", "block_size": 4, "cache": "none", "seed": 3,
      "dtype": "float64"}),
])
def test_same_run_configuration_as_workbench_run(tmp_path, cli, model_args):
    expected = run_spec(tmp_path, *cli)
    setup = setup_from_model_args({**model_args, "store": str(tmp_path / "lm.db")})
    spec = setup.spec(expected["task"], expected["decode"]["max_new_tokens"], 0.0)
    assert spec.config(decision_providers(setup.manager)) == expected
    assert setup.args.store == str(tmp_path / "lm.db")


def test_plugin_files_and_lm_eval_options(tmp_path):
    plugin = tmp_path / "leftmost.py"
    plugin.write_text(
        "from workbench.decoding.registry import hookimpl\n"
        "class Leftmost:\n"
        "    @hookimpl\n"
        "    def promote(self, state):\n"
        "        open_ = state.open_masks\n"
        "        return open_ & (open_.long().cumsum(-1) == 1)\n")
    setup = setup_from_model_args({"strategy": "spd", "plugins": str(plugin), "mc_samples": 8, "check": "choice",
                                   "device": "cpu", "batch_size": 16})
    assert decision_providers(setup.manager)["promote"] == "leftmost.Leftmost"
    assert setup.spec("t", 16, 0.0).plugins == (str(plugin),)
    assert (setup.options.mc_samples, setup.options.check, setup.args.batch_size) == (8, "choice", 16)
    assert setup.user_gen_length is None and setup.user_temperature is None  # left to each request


def test_lm_eval_defaults_are_translated(tmp_path):
    """lm-eval passes `device=cuda:0` by default, even without a GPU, and `batch_size=auto` on request."""
    import torch

    setup = setup_from_model_args({"device": "cuda:0", "batch_size": "auto", "max_batch_size": 8})
    assert setup.args.batch_size == 8
    if not torch.cuda.is_available():
        assert setup.precision == "cpu/float32"


@pytest.mark.parametrize("model_args, message", [
    ({"foo": 1}, r"unknown model argument 'foo' for --model workbench.*mc_samples.*valid parameters"),
    ({"strategy": "threshold", "tau_acc": 0.9}, r"unknown model argument 'tau_acc'"),
    ({"cache": "bogus"}, r"^model argument cache=bogus: invalid choice \(choose from 'auto'"),
    ({"block_size": "x"}, r"^model argument block_size=x: invalid int value$"),
    ({"device": "mps"}, r"^model argument device=mps: invalid choice"),
    ({"tau": 2}, r"^model argument tau=2.0 \(spd's tau_dec\): strategy 'spd': .* must be a number in \[0, 1\]"),
    ({"strategy": "threshold", "tau": 2}, r"^model argument tau=2.0: strategy 'threshold': .*'tau' must be a number"),
    ({"tau": float("inf")}, r"^model argument tau=inf: give a finite number"),
    ({"strategy": "nope"}, r"^model argument strategy=nope: unknown strategy 'nope'"),
    ({"mc_samples": 0}, r"^model argument mc_samples=0"),
    ({"mc_scheme": "x"}, r"^model argument mc_scheme='x': choose one of iid, llada"),
    ({"mc_scheme": "llada", "mc_samples": 100}, r"^model argument mc_scheme=llada: .*mc_samples \(100\) must be a "
                                                r"multiple of mc_batch_size \(32\)"),
    ({"add_bos_token": "maybe"}, r"^model argument add_bos_token='maybe': give true or false"),
    ({"add_bos_token": True}, r"^model argument add_bos_token=true: the tokenizer of .* has no BOS token"),
    ({"check": "bogus"}, r"check='bogus'.*none, number, exact"),
    ({"plugins": "/no/such/plugin.py"}, r"^model argument plugins=/no/such/plugin.py: plugin file .* does not exist"),
    ({"trainer": "nope"}, r"^model argument trainer=nope: no shipped model for trainer 'nope'"),
    ({"model": "/no/such/folder"}, r"^model argument model=/no/such/folder: model folder /no/such/folder does not"),
    ({"batch_size": 0}, r"^model argument batch_size=0"),
    # Caught before any request (they used to stop the first generate_until, naming `--block-size`):
    ({"block_size": 0}, r"^model argument block_size=0: give a positive number"),
    ({"gen_length": 0}, r"^model argument gen_length=0: give a positive number"),
    ({"max_forwards": 0}, r"^model argument max_forwards=0: give a positive number"),
    ({"temperature": -1}, r"^model argument temperature=-1.0: give 0"),
    ({"strategy": "spd", "tau_acc": 2}, r"^model argument tau_acc=2: strategy 'spd': .*'tau_acc' must be a number"),
    ({"chat_template": "on"}, r"^model argument chat_template=on: the model's tokenizer has no chat template.*; "
                              r"use chat_template=off$"),
])
def test_bad_model_arguments_fail_with_one_clear_message(model_args, message):
    """One line naming the argument as written (`tau=2.0`), never `workbench run`'s flag (`--tau`)."""
    with pytest.raises(ModelArgumentError, match=message) as info:
        setup_from_model_args(model_args)
    text = str(info.value)
    assert "\n" not in text
    flags = {o for a in run_parser()._actions for o in a.option_strings}
    assert not set(re.findall(r"--[a-z][a-z-]*", text.replace("--model workbench", ""))) & flags


def test_flags_take_booleans():
    """lm-eval adds `trust_remote_code=True` under its --trust_remote_code; a flag of `workbench run`."""
    from workbench.harness.arguments import run_options, run_parser

    if "trust_remote_code" not in run_options(run_parser()):
        pytest.skip("this workbench run has no --trust-remote-code")
    with pytest.raises(ModelArgumentError, match=r"trust_remote_code='maybe': give true or false"):
        setup_from_model_args({"trust_remote_code": "maybe"})
    assert setup_from_model_args({"trust_remote_code": True}).args.trust_remote_code is True


def test_argument_errors_are_model_argument_errors():
    with pytest.raises(ModelArgumentError):
        setup_from_model_args({"cache": "bogus"})
