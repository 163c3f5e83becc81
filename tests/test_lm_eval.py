"""`--model workbench` inside the real lm-evaluation-harness, offline, on the shipped models.

Skipped without lm-eval (`pip install -e .[lm-eval]`; .ci/run installs it). The lm-eval tasks are local
folders written by `workbench.harness.local_tasks` from the `choice` held-out set (JSONL + YAML,
`--include_path`), so nothing is downloaded. No fakes, except the uniform-state error test, which marks a
shipped masked model as `noise: uniform` (no uniform-state model ships yet).
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from tokenizers.processors import TemplateProcessing

# Before lm-eval imports `datasets`: no hub access, and its cache in a scratch folder, not in ~/.cache.
os.environ["HF_DATASETS_OFFLINE"] = os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp(prefix="workbench-lm-eval-datasets-"))
lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is an optional extra: pip install -e .[lm-eval]")

from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

from workbench.cli import main as cli  # noqa: E402
from workbench.harness.generation import cut_at_stop  # noqa: E402
from workbench.harness.likelihood import LikelihoodUndefinedError, elbo  # noqa: E402
from workbench.harness.lm_eval_model import WorkbenchLM  # noqa: E402
from workbench.harness.local_tasks import write_tasks  # noqa: E402
from workbench.harness import prompts  # noqa: E402
from workbench.models.tokenizer import encode, encode_prompt  # noqa: E402
from workbench.decoding.registry import hookimpl  # noqa: E402
from workbench.results.store import ResultsStore  # noqa: E402

N = 96  # held-out `choice` examples in the task folder: the shipped models decode them in about a second


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> Path:
    return write_tasks(tmp_path_factory.mktemp("lm-tasks"), "choice", N)


@pytest.fixture(scope="module")
def manager(tasks) -> TaskManager:
    # Only the local folder: indexing lm-eval's thousands of built-in task files takes ~10 s each time.
    return TaskManager(include_path=str(tasks), include_defaults=False)


def lm_evaluate(lm, names, manager, **kwargs) -> dict:
    return lm_eval.simple_evaluate(model=lm, tasks=list(names), task_manager=manager, **kwargs)


def workbench_run(capsys, *args) -> dict:
    assert cli(["run", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def stored(store: Path, task: str) -> list:
    """The samples of the one run of `task` in the store."""
    with ResultsStore(store) as s:
        keys = [r.key for r in s.runs() if r.config["task"] == task]
        assert len(keys) == 1, f"runs of {task}: {len(keys)}"
        return s.samples(keys[0])


@pytest.mark.parametrize("strategy, tau, temperature", [("threshold", 0.5, 0.0), ("spd", 0.5, 0.0),
                                                      ("spd", 0.5, 0.8)])
def test_same_accuracy_as_workbench_run(manager, tmp_path, capsys, strategy, tau, temperature):
    """Greedy, and sampled: a document's id is `workbench run`'s example index, so its random draws match too
    (with the same seed: `seed=0` is `workbench run`'s default; lm-eval's own would be 1234)."""
    store = tmp_path / "results.db"
    expected = workbench_run(capsys, "--strategy", strategy, "--trainer", "oput", "--tau", str(tau),
                             "--temperature", str(temperature), "--limit", str(N), "--store", str(store))
    lm = WorkbenchLM(trainer="oput", strategy=strategy, tau=tau, batch_size=64, store=str(store), check="choice",
                     seed=0, **({"temperature": temperature} if temperature else {}))
    results = lm_evaluate(lm, ["workbench_choice_gen"], manager)["results"]["workbench_choice_gen"]
    assert results["acc,none"] == pytest.approx(expected["accuracy"])
    # Sample by sample: the same prompts decoded to the same text with the same forwards, and the store's
    # own check agrees with lm-eval's score.
    ours, theirs = stored(store, "lm-eval:workbench_choice_gen"), stored(store, "choice")
    assert [(s.index, s.prompt, s.output, s.nfe, s.correct) for s in ours] == \
        [(s.index, s.prompt, s.output, s.nfe, s.correct) for s in theirs]
    assert all(s.extras["checked"] for s in ours)


class StopAfter:
    """Observer plugin: counts the rows decoded; raises KeyboardInterrupt at the end of the n-th generate call."""

    def __init__(self, calls: int | None = None):
        self.calls, self.rows = calls, 0

    @hookimpl
    def on_generation_end(self, results):
        self.rows += len(results)
        if self.calls is not None:
            self.calls -= 1
            if self.calls == 0:
                raise KeyboardInterrupt


def test_interrupted_run_reuses_the_finished_samples(manager, tmp_path):
    store = tmp_path / "results.db"
    lm = WorkbenchLM(trainer="oput", strategy="spd", tau=0.5, batch_size=16, store=str(store))
    stop = StopAfter(calls=3)  # observers are not part of the run's key: the same run either way
    lm.setup.manager.register(stop, name="interrupt")
    with pytest.raises(KeyboardInterrupt):
        lm_evaluate(lm, ["workbench_choice_gen"], manager)
    first = {s.index: s for s in stored(store, "lm-eval:workbench_choice_gen")}
    assert len(first) == 32  # two batches finished and stored, the third interrupted
    lm.setup.manager.unregister(name="interrupt")
    count = StopAfter()
    lm.setup.manager.register(count, name="count")
    resumed = lm_evaluate(lm, ["workbench_choice_gen"], manager)["results"]["workbench_choice_gen"]["acc,none"]
    assert count.rows == N - 32  # only the missing samples were decoded
    after = {s.index: s for s in stored(store, "lm-eval:workbench_choice_gen")}
    assert len(after) == N and all(after[i] == s for i, s in first.items())  # the finished ones untouched
    fresh = WorkbenchLM(trainer="oput", strategy="spd", tau=0.5, batch_size=16, store=str(tmp_path / "fresh.db"))
    assert resumed == lm_evaluate(fresh, ["workbench_choice_gen"], manager)["results"]["workbench_choice_gen"]["acc,none"]


def test_multiple_choice_by_elbo_picks_the_right_answer(manager, tmp_path):
    lm = WorkbenchLM(trainer="base", mc_samples=8, store=str(tmp_path / "r.db"))
    results = lm_evaluate(lm, ["workbench_choice_mc"], manager, limit=48)["results"]["workbench_choice_mc"]
    assert results["acc,none"] >= 0.9  # 4 choices: chance is 0.25
    assert not (tmp_path / "r.db").exists() or not stored_runs(tmp_path / "r.db")  # ELBO decodes nothing


def stored_runs(path: Path) -> list:
    with ResultsStore(path) as s:
        return s.runs()


def test_interrupted_likelihood_run_resumes_from_lm_evals_cache(manager, tmp_path, monkeypatch):
    """loglikelihood values go to lm-eval's --use_cache file one by one; the estimator is wrapped by a
    counter that interrupts the first run (the only stand-in here)."""
    from workbench.harness import likelihood

    calls, real = [], likelihood.elbo

    def counted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 6 and interrupt:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(likelihood, "elbo", counted)
    lm = WorkbenchLM(trainer="base", mc_samples=4, store=str(tmp_path / "r.db"))
    cache = str(tmp_path / "lm-eval-cache")
    interrupt = True
    with pytest.raises(KeyboardInterrupt):
        lm_evaluate(lm, ["workbench_choice_mc"], manager, limit=4, use_cache=cache)
    interrupt, calls[:] = False, []
    results = lm_evaluate(lm, ["workbench_choice_mc"], manager, limit=4, use_cache=cache)
    assert len(calls) == 4 * 4 - 5  # 4 documents x 4 choices, 5 of them computed before the interruption
    assert results["results"]["workbench_choice_mc"]["acc,none"] == 1.0


def test_stop_strings_cut_the_answer_like_lm_evals_hf_model(tmp_path):
    from lm_eval.models.utils import postprocess_generated_text

    for text, until in [("1234567", ["5", "3"]), ("abcabc", ["c"]), ("xyz", ["q", ""]), ("a\n\nb", ["\n\n"])]:
        assert cut_at_stop(text, until) == postprocess_generated_text(text, until, None)
    store = tmp_path / "r.db"
    lm = WorkbenchLM(trainer="oput", strategy="threshold", tau=0.95, store=str(store))
    prompts = ["57466307=", "64039346=", "12345678=", "98765432="]
    requests = [Instance("generate_until", {}, (p, {"until": ["7"], "max_gen_toks": 16}), idx=0,
                         metadata=("stops", i, 1)) for i, p in enumerate(prompts)]
    answers = lm.generate_until(requests)
    outputs = {s.prompt: s.output for s in stored(store, "lm-eval:stops")}
    assert answers == [outputs[p].split("7")[0] for p in prompts]
    assert any("7" in outputs[p] for p in prompts)  # some answer really was cut


def test_chat_template_applied_when_the_tokenizer_has_one(manager, tmp_path):
    store = tmp_path / "r.db"
    lm = WorkbenchLM(trainer="oput", strategy="threshold", tau=0.95, store=str(store))
    with pytest.raises(ValueError, match="has no chat template"):
        lm_evaluate(lm, ["workbench_choice_gen"], manager, limit=2, apply_chat_template=True)
    with pytest.raises(ValueError, match="has no chat template"):  # what lm-eval asks first with a tracker
        lm.chat_template(True)
    lm.tokenizer.chat_template = "{% for m in messages %}[{{ m['content'] }}]{% endfor %}"
    assert lm.chat_template(True) == lm.tokenizer.chat_template
    lm_evaluate(lm, ["workbench_choice_gen"], manager, limit=4, apply_chat_template=True)
    prompts = [s.prompt for s in stored(store, "lm-eval:workbench_choice_gen")]
    assert len(prompts) == 4 and all(p.startswith("[") and p.endswith("=]") for p in prompts)


def test_rolling_loglikelihood_is_the_elbo_after_the_prefix_token(tmp_path):
    lm = WorkbenchLM(trainer="base", mc_samples=4, store=str(tmp_path / "r.db"), seed=0)
    (value,) = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, ("31827509",), idx=0)])
    block = lm.setup.block_size if lm.model.block_causal else None
    assert value == elbo(lm.model, [lm.prefix_token_id], encode(lm.tokenizer, "31827509"), samples=4, block_size=block)
    assert value < 0


def test_likelihood_requests_on_a_uniform_state_model_name_the_model_and_request(manager, tmp_path):
    lm = WorkbenchLM(trainer="uniform", mc_samples=2, store=str(tmp_path / "r.db"))
    lm.model.config.noise = "uniform"  # stand-in for a uniform-state model (none ships yet)
    with pytest.raises(LikelihoodUndefinedError, match=r"'loglikelihood' is undefined for model shipped model 'uniform'"):
        lm_evaluate(lm, ["workbench_choice_mc"], manager, limit=2)
    with pytest.raises(LikelihoodUndefinedError, match=r"'loglikelihood_rolling'"):
        lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, ("1234",), idx=0)])


class PromptRecorder:
    """Observer: the prompt ids (left padding dropped) of every row, by sample id, at its first step."""

    def __init__(self):
        self.prompts: dict[int, list[int]] = {}

    @hookimpl
    def on_step_end(self, state):
        if state.block_index == 1 and state.step == 1:
            for i, sid in enumerate(state.sample_ids.tolist()):
                self.prompts[sid] = state.context[i][state.context_valid[i]].tolist()


def add_bos_like_llama(tokenizer, bos: str = "[UNK]") -> int:
    """Make the character tokenizer put a BOS first by default, as LLaDA's and LLaMA's tokenizers do (an id the
    shipped models have: UNK)."""
    tokenizer.bos_token = bos
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tokenizer.convert_tokens_to_ids(bos))])
    return tokenizer.bos_token_id


def hf_tok_encode(tokenizer, string, add_special_tokens=None, add_bos_token=None) -> list[int]:
    """lm-eval's HF model's `tok_encode` (lm_eval/models/huggingface.py), written with its own helpers: the
    reference the workbench's encoding must equal."""
    from lm_eval.models.utils import _add_special_kwargs, has_bos_prefix

    kwargs = _add_special_kwargs(add_special_tokens, add_bos_token)
    if add_special_tokens is None and has_bos_prefix(string, tokenizer.bos_token):
        kwargs["add_special_tokens"] = False
    return tokenizer.encode(string, **kwargs)


def test_prompts_get_the_tokenizers_special_tokens_as_in_lm_evals_hf_model(tmp_path):
    store = tmp_path / "r.db"
    lm = WorkbenchLM(trainer="oput", strategy="threshold", tau=0.95, store=str(store), seed=0)
    # The shipped character tokenizer adds nothing by default: its prompts are the ids they always were.
    assert lm.tok_encode("57466307=") == lm.tokenizer("57466307=")["input_ids"] == encode(lm.tokenizer, "57466307=")
    bos = add_bos_like_llama(lm.tokenizer)
    assert lm.tok_encode("12=") == [bos, *encode(lm.tokenizer, "12=")]
    for text in ("12=", "[UNK]12=", ""):
        for special in (None, True, False):
            for add_bos in (None, True, False):
                assert prompts.encode_request(lm.tokenizer, text, add_special_tokens=special, add_bos_token=add_bos) \
                    == hf_tok_encode(lm.tokenizer, text, special, add_bos), (text, special, add_bos)
    # generate_until decodes from [BOS] + prompt; a context that starts with BOS gets no second one.
    recorder = PromptRecorder()
    lm.setup.manager.register(recorder, name="recorder")
    contexts = ["57466307=", "[UNK]64039346="]
    requests = [Instance("generate_until", {}, (c, {"until": [], "max_gen_toks": 8}), idx=0, metadata=("bos", i, 1))
                for i, c in enumerate(contexts)]
    lm.generate_until(requests)
    assert recorder.prompts == {0: [bos, *encode(lm.tokenizer, "57466307=")],
                                1: [bos, *encode(lm.tokenizer, "64039346=")]}
    # loglikelihood contexts: lm-eval's split of the whole encoding, BOS in the context.
    assert lm._encode_pair("57466307=", "1") == ([bos, *encode(lm.tokenizer, "57466307=")], encode(lm.tokenizer, "1"))


def with_chat_template(tmp_path, trainer: str = "oput") -> Path:
    """A copy of a shipped model folder whose tokenizer has a chat template."""
    from workbench.models.folders import default_model_path

    folder = tmp_path / f"{trainer}-chat"
    shutil.copytree(default_model_path(trainer), folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    # Characters the character tokenizer knows: a user turn in parentheses, the assistant's turn opened by ">".
    config["chat_template"] = ("{% for m in messages %}({{ m['content'] }}){% endfor %}"
                               "{% if add_generation_prompt %}>{% endif %}")
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def test_chat_template_model_argument_renders_like_workbench_run(manager, tmp_path, capsys):
    folder, n = with_chat_template(tmp_path), 16
    expected = workbench_run(capsys, "--strategy", "threshold", "--model", str(folder), "--chat-template", "on",
                             "--limit", str(n), "--store", str(tmp_path / "run.db"))
    store = tmp_path / "lm.db"
    lm = WorkbenchLM(model=str(folder), strategy="threshold", chat_template="on", store=str(store), seed=0,
                     check="choice")
    results = lm_evaluate(lm, ["workbench_choice_gen"], manager, limit=n)["results"]["workbench_choice_gen"]
    assert results["acc,none"] == pytest.approx(expected["accuracy"])
    ours, theirs = stored(store, "lm-eval:workbench_choice_gen"), stored(tmp_path / "run.db", "choice")
    assert [(s.index, s.prompt, s.output, s.nfe) for s in ours] == [(s.index, s.prompt, s.output, s.nfe) for s in theirs]
    with ResultsStore(store) as s:
        (run,) = s.runs()
        assert run.config["chat_template"] is True
    # Likelihood contexts are the same rendered ids; lm-eval's --apply_chat_template on top would render twice.
    context_ids, _ = lm._encode_pair("57466307=", "1")
    assert context_ids == encode_prompt(lm.tokenizer, "57466307=", True)
    assert lm.tok_decode(context_ids) == "(57466307=)>"
    with pytest.raises(ValueError, match="would both render the chat template"):
        lm_evaluate(lm, ["workbench_choice_gen"], manager, limit=2, apply_chat_template=True)
    with pytest.raises(ValueError, match="chat_template=on does not apply"):
        lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, ("1234",), idx=0)])


def test_lm_evals_seed_seeds_sampled_generations_unless_the_model_argument_does(manager, tmp_path, capsys):
    """lm-eval hands a model its seed by seeding torch (--seed's third value; simple_evaluate's
    torch_random_seed): that is the run's seed, as `workbench run --seed`; the model argument seed= wins."""
    n = 24

    def sampled(torch_seed, store, **model_args):
        lm = WorkbenchLM(trainer="oput", strategy="spd", tau=0.5, temperature=0.8, store=str(store), **model_args)
        lm_evaluate(lm, ["workbench_choice_gen"], manager, limit=n, torch_random_seed=torch_seed)
        with ResultsStore(store) as s:
            (run,) = s.runs()
            return run.config["decode"]["seed"], [x.output for x in s.samples(run.key)]

    seed5, out5 = sampled(5, tmp_path / "a.db")
    assert seed5 == 5 and sampled(5, tmp_path / "b.db") == (5, out5)
    seed6, out6 = sampled(6, tmp_path / "c.db")
    assert seed6 == 6 and out6 != out5
    run5 = workbench_run(capsys, "--strategy", "spd", "--trainer", "oput", "--tau", "0.5", "--temperature", "0.8",
                         "--seed", "5", "--limit", str(n), "--store", str(tmp_path / "run.db"))
    assert [x.output for x in stored(tmp_path / "run.db", "choice")] == out5 and run5["n"] == n
    assert sampled(6, tmp_path / "d.db", seed=5) == (5, out5)  # the model argument wins over lm-eval's seed
    # The ELBO's draws follow the same seed.
    lm = WorkbenchLM(trainer="base", mc_samples=4, store=str(tmp_path / "e.db"))
    request = [Instance("loglikelihood", {}, ("57466307=", "1234"), idx=0)]
    values = []
    for torch_seed in (5, 5, 6):
        torch.manual_seed(torch_seed)
        values.append(lm.loglikelihood(request)[0][0])
    assert values[0] == values[1] != values[2]


@pytest.mark.parametrize("order", [(0, 2), (2, 0)], ids=["0-then-2", "2-then-0"])
def test_few_shot_system_instruction_and_chat_template_are_separate_runs(manager, tmp_path, order):
    """What lm-eval writes into the prompts is part of the run's identity: each setting is its own run in one
    store (no StaleSamplesError), and rerunning a setting reuses its samples."""
    store, n = tmp_path / "r.db", 4
    lm = WorkbenchLM(trainer="oput", strategy="threshold", tau=0.95, store=str(store), seed=0)
    lm.tokenizer.chat_template = "{% for m in messages %}[{{ m['content'] }}]{% endfor %}"
    settings = [{"num_fewshot": order[0]}, {"num_fewshot": order[1]}, {"num_fewshot": 0, "system_instruction": "Go:"},
                {"num_fewshot": 0, "apply_chat_template": True}]
    for kwargs in settings:
        lm_evaluate(lm, ["workbench_choice_gen"], manager, limit=n, **kwargs)
    with ResultsStore(store) as s:
        runs = s.runs()
        prompts_by_run = [[x.prompt for x in s.samples(r.key)] for r in runs]
    assert len(runs) == 4 and all(len(p) == n for p in prompts_by_run)
    assert len({tuple(p) for p in prompts_by_run}) == 4
    assert {r.config["task_content"]["prompts"]["probe"] for r in runs} == {0}
    count = StopAfter()
    lm.setup.manager.register(count, name="count")
    lm_evaluate(lm, ["workbench_choice_gen"], manager, limit=n, num_fewshot=order[0])
    assert count.rows == 0  # served from the store
    lm_evaluate(lm, ["workbench_choice_gen"], manager, limit=2 * n, num_fewshot=order[0])
    assert count.rows == n  # a longer --limit of the same setting extends its run


def _pth_installed() -> bool:
    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    return any((Path(d) / "workbench_lm_eval.pth").is_file() for d in dirs)


@pytest.mark.skipif(not _pth_installed(), reason="workbench_lm_eval.pth is not installed in this environment "
                                                  "(reinstall: pip install -e .[lm-eval])")
def test_lm_eval_command_line(tasks, tmp_path, capsys):
    """The real `python -m lm_eval` process (startup file included) gives `workbench run`'s samples; its `--seed`
    seeds the sampled decode as `workbench run --seed` does."""
    store, out, n = tmp_path / "r.db", tmp_path / "out", 32
    expected = workbench_run(capsys, "--strategy", "spd", "--trainer", "oput", "--tau", "0.5", "--limit", str(n),
                             "--temperature", "0.8", "--seed", "3", "--store", str(tmp_path / "run.db"))
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "lm_eval", "--model", "workbench", "--model_args",
         f"trainer=oput,strategy=spd,tau=0.5,temperature=0.8,store={store}", "--include_path", str(tasks), "--tasks",
         "workbench_choice_gen", "--limit", str(n), "--batch_size", "64", "--output_path", str(out), "--seed", "3"],
        capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (results_file,) = out.rglob("results_*.json")
    results = json.loads(results_file.read_text())["results"]["workbench_choice_gen"]
    assert results["acc,none"] == pytest.approx(expected["accuracy"])
    ours = stored(store, "lm-eval:workbench_choice_gen")
    assert [s.output for s in ours] == [s.output for s in stored(tmp_path / "run.db", "choice")] and len(ours) == n


def test_a_bad_model_argument_is_one_line_and_exit_2_on_the_command_line(tasks):
    """`python -m workbench.harness` is lm-eval's command line (as `lm_eval`): no traceback, the argument named
    as written."""
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "workbench.harness", "--model", "workbench", "--model_args", "trainer=oput,tau=2",
         "--include_path", str(tasks), "--tasks", "workbench_choice_gen", "--limit", "2"],
        capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        "lm_eval --model workbench: error: model argument tau=2.0 (spd's tau_dec): strategy 'spd': ")


@pytest.mark.parametrize("argv0, orig, expected", [
    ("/venv/bin/lm_eval", None, True), ("/venv/bin/lm-eval", None, True),
    ("/x/lm_eval/__main__.py", ["python", "-m", "lm_eval", "--tasks", "t"], True),
    ("/x/workbench/harness/__main__.py", ["python", "-m", "workbench.harness"], True),
    ("/venv/bin/pytest", ["python", "-m", "pytest"], False), ("script.py", ["python", "script.py"], False),
])
def test_the_command_line_is_told_from_in_process_use(monkeypatch, argv0, orig, expected):
    from workbench.harness.autoload import lm_eval_command_line

    monkeypatch.setattr(sys, "argv", [argv0])
    monkeypatch.setattr(sys, "orig_argv", orig or ["python", argv0], raising=False)
    assert lm_eval_command_line() is expected


@pytest.mark.parametrize("argv0, registered", [("/venv/bin/lm_eval", True), ("/venv/bin/lm-eval", True),
                                                ("/venv/bin/python-script", False)])
def test_startup_line_registers_the_model_in_lm_eval_processes_only(argv0, registered):
    """The line of workbench_lm_eval.pth, run in a fresh interpreter under another argv[0]; other processes
    must not even import lm-eval."""
    from workbench.harness.autoload import PTH_LINE

    code = (f"import sys; sys.argv = [{argv0!r}]\n{PTH_LINE}"
            "print('lm_eval' in sys.modules and 'workbench' in sys.modules['lm_eval.api.registry'].model_registry)")
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(registered)
