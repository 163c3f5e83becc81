"""Decode lm-eval `generate_until` requests with the workbench loop; every answer lands in the results store.

Called by `WorkbenchLM.generate_until` with all the requests lm-eval has for the model (any number of tasks).
Requests are grouped into workbench runs by lm-eval task and decode settings (generation length, temperature),
and each group goes through `workbench.results.evaluate.evaluate`, the function behind `workbench run`: the same
batching, prompt encoding, length check, run lock and per-sample records (strategy, parameters, model hash,
NFE, tokens, seconds, revisions), under the run `lm-eval:<task>`, so `workbench report` lists it beside an
ablation grid. A rerun of an interrupted evaluation decodes only the requests not yet stored.

Sample ids: a request's id is its document's index in the task (`doc_id`; `doc_id * repeats + repeat` when
lm-eval asks for several answers per document), the id `workbench run` gives an example of its evaluation
split. So a local copy of a workbench task's held-out set decodes exactly as `workbench run` does, per-sample
random draws included (`DecodeConfig.rng`, with the same seed).
Requests without document ids, or with several prompts for one document, get ids hashed from their content.
Within a group the requests are decoded in id order, batch by batch, as `workbench run` decodes a task.

Prompts: each context is encoded by lm-eval's conventions (`workbench.harness.prompts.prompt_ids`: the
tokenizer's special tokens, or the chat template with `chat_template=on`); the stored prompt is the context's
text. What lm-eval put into the contexts (few-shot examples, a system instruction, its own chat template) is
part of the run's identity: the run key holds a fingerprint of the prompt with the lowest id
(`prompts.prompt_identity`), so `--num_fewshot 0` and `--num_fewshot 2` are two runs side by side in one store.
The store still refuses to serve a stored sample whose prompt differs from the request's
(`workbench.results.evaluate.StaleSamplesError`), should a change leave that one prompt alone.

Stop strings are applied after decoding: the stored output is the whole decoded text (EOS and specials
dropped), and lm-eval receives it cut before the first stop string, as lm-eval's own HF model returns it.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from workbench.harness.checks import Check, judge, make_check
from workbench.harness.prompts import prompt_identity, prompt_ids
from workbench.results.evaluate import evaluate
from workbench.results.store import ResultsStore

TASK_PREFIX = "lm-eval:"


@attrs.frozen(kw_only=True, eq=False)
class GenRequest:
    """One lm-eval `generate_until` request, in workbench terms.

    `max_gen_toks` and `temperature` are the request's own (lm-eval's task settings); the model arguments
    `gen_length` / `temperature` override them.
    """

    task: str  # lm-eval task name ("" when lm-eval gave none)
    doc_id: int | None
    repeat: int  # 0..repeats-1 when lm-eval asks for several answers to one document
    context: str
    until: tuple[str, ...]
    max_gen_toks: int
    temperature: float = 0.0
    doc: Any = None


@attrs.frozen(eq=False)
class _Sample:
    """What `evaluate` reads of an example (uid, prompt, final, prompt_ids), plus the request it answers."""

    uid: int
    prompt: str
    final: str | None
    request: GenRequest
    prompt_ids: tuple[int, ...]


def content_uid(req: GenRequest) -> int:
    """A stable non-negative 63-bit id hashed from the request itself."""
    text = json.dumps([req.task, req.doc_id, req.repeat, req.context, list(req.until)], ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1


def assign_uids(requests: Sequence[GenRequest]) -> list[int]:
    """The store index of each request of one run (see the module docstring)."""
    repeats = 1 + max(r.repeat for r in requests)
    by_doc = [None if r.doc_id is None else r.doc_id * repeats + r.repeat for r in requests]
    prompts: dict[int, str] = {}
    for uid, req in zip(by_doc, requests):
        if uid is None or prompts.setdefault(uid, req.context) != req.context:
            return [content_uid(r) for r in requests]
    return by_doc  # type: ignore[return-value]


def cut_at_stop(text: str, until: Sequence[str]) -> str:
    """`text` up to the earliest occurrence of any non-empty stop string (all of it when none occurs)."""
    cut = len(text)
    for stop in until:
        if stop:
            at = text.find(stop)
            if at != -1:
                cut = min(cut, at)
    return text[:cut]


class _Judge:
    """The `task` `evaluate` asks whether an output is right: the answer as lm-eval gets it, checked."""

    def __init__(self, check: Check | None):
        self._check = check

    def check(self, sample: _Sample, output: str) -> bool:
        return judge(self._check, sample.request.doc, cut_at_stop(output, sample.request.until))[0]


def settings_of(setup, req: GenRequest) -> tuple[int, float]:
    """(generation length, temperature) a request is decoded with: the model arguments', else the request's."""
    gen = setup.user_gen_length if setup.user_gen_length is not None else req.max_gen_toks
    temperature = setup.user_temperature if setup.user_temperature is not None else req.temperature
    return int(gen), float(temperature)


def generate_until(setup, requests: Sequence[GenRequest], *, seed: int | None = None,
                   on_batch: Callable[[int], None] | None = None) -> list[str]:
    """The answer to every request, in order, each cut at its first stop string.

    `setup` is a `workbench.harness.arguments.HarnessSetup`; `seed` the run's seed (`setup.run_seed()`; None:
    the `seed` model argument's value); `on_batch(n)` is called as n more samples are stored (progress).
    Raises `workbench.decoding.limits.LengthError` before decoding when a prompt does not fit.
    """
    check = make_check(setup.options.check, setup.options.answer_field)
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, req in enumerate(requests):
        groups[(req.task, *settings_of(setup, req))].append(i)
    answers: list[str | None] = [None] * len(requests)
    with ResultsStore(setup.args.store) as store:
        for (task, gen_length, temperature), members in groups.items():
            uids = dict(zip(members, assign_uids([requests[i] for i in members])))
            samples: dict[int, _Sample] = {}
            for i in sorted(members, key=lambda i: uids[i]):  # id order: the order `workbench run` decodes in
                if uids[i] not in samples:  # the very same request twice is decoded once
                    req = requests[i]
                    samples[uids[i]] = _Sample(uids[i], req.context, judge(check, req.doc, "")[1], req,
                                               tuple(prompt_ids(setup, req.context)))
            first = next(iter(samples.values()))  # the lowest id
            name = f"{TASK_PREFIX}{task}"
            spec = setup.spec(name, gen_length, temperature, seed=seed,
                              task_content=prompt_identity(name, first.uid, first.prompt, first.prompt_ids))

            def extras(row: int) -> dict:
                return {**setup.revisions.extras(row), "checked": check is not None}

            _, records = evaluate(setup.model, setup.tokenizer, _Judge(check), setup.manager, spec,
                                  list(samples.values()), store, batch_size=setup.args.batch_size,
                                  on_batch=on_batch, sample_extras=extras)
            outputs = {r.index: r.output for r in records}
            for i in members:
                answers[i] = cut_at_stop(outputs[uids[i]], requests[i].until)
    return answers  # type: ignore[return-value]
