"""Decode a task's evaluation examples with one configured run and record every sample.

Shared by `workbench run`, `workbench ablate` and the model card: samples are decoded in batches, each
finished sample is written to the results store at once (so an interrupted run resumes where it
stopped), and samples already in the store for the same configuration are not decoded again.

Under torchrun the batches a one-process run would decode are dealt out round-robin over the ranks
(so each sample is decoded in the same batch, with the same padding and sampling noise, and its
output is identical); after each round rank 0 gathers the records and stores them. Only rank 0 holds
the store: the other ranks pass `store=None`.

Before decoding, rank 0 claims the run (`workbench.results.runlock`), so a second process running the same
configuration on the same store waits (or, with `wait=False`, hears `RunBusy`) instead of decoding the same
samples, and every prompt is checked against the model's length limit (`workbench.decoding.limits`).
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from typing import Callable, Sequence

import attrs

import workbench
from workbench.runtime.distributed import broadcast, gather_lists, rank_world, round_robin
from workbench.decoding.limits import check_lengths, preview
from workbench.decoding.loop import cut_after_eos, end_ids, generate
from workbench.models.tokenizer import decode, encode_prompt
from workbench.results.provenance import canonical_params, decision_files, strategy_identity, task_identity_by_name
from workbench.decoding.registry import decision_providers
from workbench.decoding.state import DecodeConfig
from workbench.results.runlock import RunBusy, RunLocks
from workbench.results.store import ResultsStore, SampleRecord, config_key


@attrs.frozen(kw_only=True)
class RunSpec:
    """Everything that identifies one evaluated cell; `config` is hashed into the store's run key.

    batch_size: prompts per `generate` call (a plugin may depend on its batch; with `rng="batch"` every draw
    does); `evaluate` refuses to decode with another one. None keys the run without it (callers written before
    it was keyed). chat_template: prompts are rendered with the tokenizer's chat template. task_content:
    `workbench.results.provenance.task_identity(task)`; None looks the task up by its name.
    """

    strategy: str
    params: dict
    plugins: tuple[str, ...]
    trainer: str | None
    model: str
    model_hash: str
    task: str
    decode: DecodeConfig
    precision: str = "cpu/float32"  # `workbench.runtime.placement.Placement.label` of the model decoding it
    batch_size: int | None = None
    chat_template: bool = False
    task_content: dict | None = None

    def config(self, providers: dict[str, str]) -> dict:
        """The run key's fields (docs/reliability.md, "What the store keys on"): every setting that can change a
        sample, the code that decides (strategy source, decision plugin files' bytes) and the data (checkpoint hash,
        task content). Parameters are canonical (`provenance.canonical_params`); `params_set` (those that differ
        from the defaults) and `main_threshold` let `workbench report` show a run whose strategy is gone.
        Observer-only plugin files are not part of it: they cannot change a sample."""
        params, defaults, main = canonical_params(self.strategy, self.params)
        return {
            "strategy": self.strategy, "strategy_code": strategy_identity(self.strategy), "params": params,
            "params_set": {k: v for k, v in params.items() if v != defaults.get(k)}, "main_threshold": main,
            "plugins": decision_files(self.plugins), "providers": providers, "trainer": self.trainer,
            "model_hash": self.model_hash, "task": self.task,
            "task_content": self.task_content if self.task_content is not None else task_identity_by_name(self.task),
            "split": "eval", "decode": decode_key(self.decode), "batch_size": self.batch_size,
            "chat_template": self.chat_template, "precision": self.precision, "version": workbench.__version__,
        }


def decode_key(decode: DecodeConfig) -> dict:
    """The run key's `decode` entry: every DecodeConfig field, except `last_block` where it changes nothing
    (`short`, or no part-filled last block). It came after stores of runs existed: a run that decodes as
    before it keeps its key and its stored samples."""
    key = attrs.asdict(decode)
    if decode.decoded_length == decode.max_new_tokens:
        del key["last_block"]
    return key


class StaleSamplesError(ValueError):
    """The store holds samples of this run whose prompts differ from the task's: its content changed in a way
    its identity does not capture."""


# Per-sample fields the core itself stores; an observer's extras may not take these names.
CORE_EXTRAS = ("block_steps", "nfe_total", "fixed", "broke")


def observer_extras(result) -> dict:
    """The extras observers added to a `RowResult` (plus the core's `unfilled`), checked to be storable."""
    from workbench.results.store import _canonical_json

    taken = sorted(set(result.extras) & set(CORE_EXTRAS))
    if taken:
        raise ValueError(f"an observer wrote the per-sample extra(s) {taken}, which the core stores itself; "
                         f"rename them (e.g. prefix them with your plugin's name)")
    try:
        _canonical_json(result.extras)
    except TypeError as err:
        raise ValueError(f"sample {result.sample_id}: an observer's extras cannot be stored ({err}); write "
                         f"numbers, strings, booleans, lists or dicts of them") from None
    return dict(result.extras)


def evaluate(
    model, tokenizer, task, manager, spec: RunSpec, examples: Sequence, store: ResultsStore | None, *,
    batch_size: int = 64, on_batch: Callable[[int], None] | None = None,
    sample_extras: Callable[[int], dict] | None = None, wait: bool = True,
) -> tuple[str, list[SampleRecord]]:
    """Decode the examples not yet in `store` for this run; returns (run key, all its samples by index).

    `sample_extras(i)`, called after each `generate` with a row's index in that batch, returns extra
    per-sample fields to store (e.g. revision counts an observer plugin collected for the row). An
    `unrevised_ids` entry (generated ids of a counterfactual decode) is not stored: it becomes the flags
    `fixed` (right now, wrong with those ids) and `broke` (the reverse).
    Under torchrun every rank calls this; ranks other than 0 pass `store=None` and get `(key, [])`.
    When another process is decoding the same run on the same store, `wait=True` waits for it (saying so
    on stderr) and `wait=False` raises `RunBusy` on every rank.
    """
    if spec.batch_size is not None and spec.batch_size != batch_size:
        raise ValueError(f"RunSpec.batch_size {spec.batch_size} differs from the batch_size {batch_size} it is "
                         f"decoded with; the run key must name the batch size the samples are decoded in")
    with ExitStack() as claims:
        return _evaluate(model, tokenizer, task, manager, spec, examples, store, claims, batch_size=batch_size,
                         on_batch=on_batch, sample_extras=sample_extras, wait=wait)


def _evaluate(model, tokenizer, task, manager, spec, examples, store, claims: ExitStack, *, batch_size, on_batch,
              sample_extras, wait):
    rank, world = rank_world()
    key, todo_uids, busy = None, [], None
    if store is not None:
        config = spec.config(decision_providers(manager))
        locks = claims.enter_context(RunLocks(store.path))
        params = "".join(f" {k}={v}" for k, v in sorted(spec.params.items()))
        label = f"{spec.strategy}{params} on {spec.trainer or spec.model} ({spec.task})"
        try:  # held until this function returns: the run's samples are then all stored
            claims.enter_context(locks.claim(config_key(config), wait=wait, what=label,
                                             on_wait=lambda text: print(text, file=sys.stderr, flush=True)))
        except RunBusy as err:
            busy = str(err)
        if busy is None:
            key = store.ensure_run(config)
            done = store.done_samples(key)
            _check_stored_prompts(store, key, examples, done)
            todo_uids = [ex.uid for ex in examples if ex.uid not in done]
    key, todo_uids, busy = broadcast((key, todo_uids, busy))  # rank 0's store decides what is left to do
    if busy is not None:
        raise RunBusy(busy)
    todo_set = set(todo_uids)
    todo = [ex for ex in examples if ex.uid in todo_set]
    # Every prompt is checked before the first is decoded, so a too-long sample fails the run at once.
    check_lengths(model, [prompt_ids(tokenizer, ex, spec) for ex in todo],
                  spec.decode.decoded_length,
                  names=[f"sample {ex.uid} (prompt {preview(ex.prompt)})" for ex in todo])
    batches = [todo[start : start + batch_size] for start in range(0, len(todo), batch_size)]
    for batch in round_robin(batches, rank, world):
        prompts = [prompt_ids(tokenizer, ex, spec) for ex in batch]
        results = generate(model, prompts, manager, spec.decode, sample_ids=[ex.uid for ex in batch])
        records = []
        for row, (ex, res) in enumerate(zip(batch, results)):
            output = decode(tokenizer, res.ids)
            correct = bool(task.check(ex, output))
            extras = {**observer_extras(res), "block_steps": list(res.block_steps), "nfe_total": res.nfe_total,
                      **(sample_extras(row) if sample_extras else {})}
            if "unrevised_ids" in extras:  # a counterfactual output: did revisions fix or break the answer?
                was_correct = bool(task.check(ex, decode(tokenizer, cut_after_eos(extras.pop("unrevised_ids"),
                                                                                  end_ids(model)))))
                extras["fixed"], extras["broke"] = correct and not was_correct, was_correct and not correct
            records.append(SampleRecord(
                index=ex.uid, prompt=ex.prompt, output=output, expected=ex.final, correct=correct, nfe=res.nfe,
                tokens=res.tokens, seconds=res.seconds, extras=extras,
            ))
        records = gather_lists(records)  # this round's records of every rank, on rank 0
        if store is None:
            continue
        for record in records:
            store.add_sample(key, record)  # committed before the next round starts
        if on_batch:
            on_batch(len(records))
    if store is None:
        return key, []
    wanted = {ex.uid for ex in examples}
    if wanted <= store.done_samples(key):
        store.mark_complete(key)
    return key, [s for s in store.samples(key) if s.index in wanted]


def prompt_ids(tokenizer, example, spec: RunSpec) -> list[int]:
    """The ids an example's prompt is decoded from: its own `prompt_ids` when it carries them (the lm-eval model
    encodes prompts by lm-eval's conventions, `workbench.harness.prompts`), else its text encoded as `workbench
    run` does (`encode_prompt`: no special tokens added, or the chat template's own)."""
    ids = getattr(example, "prompt_ids", None)
    return list(ids) if ids is not None else encode_prompt(tokenizer, example.prompt, spec.chat_template)


def _check_stored_prompts(store, key: str, examples: Sequence, done: set[int]) -> None:
    """StaleSamplesError when a stored sample of this run has another prompt than the example of its index."""
    if not done:
        return
    wanted = {ex.uid: ex.prompt for ex in examples if ex.uid in done}
    for sample in store.samples(key):
        if sample.index in wanted and sample.prompt != wanted[sample.index]:
            raise StaleSamplesError(
                f"{store.path}: run {key[:12]} holds sample {sample.index} with the prompt "
                f"{preview(sample.prompt)} but the task now gives {preview(wanted[sample.index])}; the task "
                f"changed in a way its identity() does not capture. Give the task an identity() that covers "
                f"its content, or use a new --store")
