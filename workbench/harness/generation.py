"""Decode lm-eval `generate_until` requests with the workbench loop; every answer lands in the results store.

Called by `WorkbenchLM.generate_until` with all the requests lm-eval has for the model (any number of tasks).
Requests are grouped into workbench runs by lm-eval task and decode settings (generation length, temperature),
and each group goes through `workbench.evaluate.evaluate`, the function behind `workbench run`: the same
batching, prompt encoding, length check, run lock and per-sample records (strategy, parameters, model hash,
NFE, tokens, seconds, revisions), under the run `lm-eval:<task>`, so `workbench report` lists it beside an
ablation grid. A rerun of an interrupted evaluation decodes only the requests not yet stored.

Sample ids: a request's id is a hash of (task, document id, repeat, prompt, stop strings), so a sample is
reused only for the very same request; another prompt (more few-shot examples, a chat template) is a new
sample, never a stale one. Within a group the requests are decoded in document order, batch by batch, which
is the order `workbench run` decodes a task's examples in (so equal prompts give equal batches).

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

from workbench.evaluate import evaluate
from workbench.harness.checks import Check, judge, make_check
from workbench.store import ResultsStore

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
    """What `evaluate` reads of an example (uid, prompt, final), plus the request it answers."""

    uid: int
    prompt: str
    final: str | None
    request: GenRequest


def sample_uid(req: GenRequest) -> int:
    """A stable non-negative 63-bit id of the request (the store's sample index)."""
    text = json.dumps([req.task, req.doc_id, req.repeat, req.context, list(req.until)], ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1


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


def generate_until(setup, requests: Sequence[GenRequest], *,
                   on_batch: Callable[[int], None] | None = None) -> list[str]:
    """The answer to every request, in order, each cut at its first stop string.

    `setup` is a `workbench.harness.arguments.HarnessSetup`; `on_batch(n)` is called as n more samples are
    stored (progress). Raises `workbench.limits.LengthError` before decoding when a prompt does not fit.
    """
    check = make_check(setup.options.check, setup.options.answer_field)
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, req in enumerate(requests):
        groups[(req.task, *settings_of(setup, req))].append(i)
    answers: list[str | None] = [None] * len(requests)
    with ResultsStore(setup.args.store) as store:
        for (task, gen_length, temperature), members in groups.items():
            spec = setup.spec(f"{TASK_PREFIX}{task}", gen_length, temperature)
            # Document order (then repeat, then lm-eval's order): the order `workbench run` decodes in.
            order = sorted(members, key=lambda i: (requests[i].doc_id is None, requests[i].doc_id or 0,
                                                   requests[i].repeat, i))
            samples: dict[int, _Sample] = {}
            for i in order:
                req = requests[i]
                uid = sample_uid(req)
                if uid not in samples:  # the very same request twice is decoded once
                    expected = judge(check, req.doc, "")[1]
                    samples[uid] = _Sample(uid, req.context, expected, req)

            def extras(row: int) -> dict:
                return {**setup.revisions.extras(row), "checked": check is not None}

            _, records = evaluate(setup.model, setup.tokenizer, _Judge(check), setup.manager, spec,
                                  list(samples.values()), store, batch_size=setup.args.batch_size,
                                  on_batch=on_batch, sample_extras=extras)
            outputs = {r.index: r.output for r in records}
            for i in members:
                answers[i] = cut_at_stop(outputs[sample_uid(requests[i])], requests[i].until)
    return answers  # type: ignore[return-value]
