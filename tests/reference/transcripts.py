"""Replay golden transcripts: the authors' sampler's outputs, recorded on a tiny random model, decoded again
by the workbench.

A transcript is `tests/reference/<strategy>/<name>.json`, written by `benchmarks/reference/record_<strategy>.py`
from a checkout of the authors' repository (see `tests/reference/README.md` for the format). CI needs only the
JSON: the model is rebuilt from its `TinySpec` (`benchmarks/reference/tiny.py`), and `check_case` decodes every
case's prompts with the workbench, each alone and all together in one batch, and requires the recorded ids
and forward counts, except for the rows a case lists under `divergences` with their cause.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "reference"))

import tiny  # noqa: E402  (benchmarks/reference/tiny.py: the model every transcript is recorded on)

from workbench.decoding.loop import generate  # noqa: E402
from workbench.decoding.registry import make_manager  # noqa: E402
from workbench.decoding.state import DecodeConfig  # noqa: E402

HERE = Path(__file__).resolve().parent


def transcripts(strategy: str) -> list[dict]:
    """Every transcript recorded for `strategy`, each with its `path`."""
    paths = sorted((HERE / strategy).glob("*.json"))
    return [dict(json.loads(p.read_text()), path=str(p.relative_to(ROOT))) for p in paths]


def cases(strategy: str) -> list:
    """pytest params (transcript, case) of every case of every transcript of `strategy`, named file:case."""
    return [pytest.param(t, c, id=f"{Path(t['path']).stem}:{c['name']}")
            for t in transcripts(strategy) for c in t["cases"]]


_MODELS: dict[str, object] = {}


def model_of(transcript: dict):
    """The transcript's tiny model, rebuilt; fails (not a decoding mismatch) if its weights differ."""
    spec = dict(transcript["model"])
    key = json.dumps(spec, sort_keys=True)
    if key not in _MODELS:
        model = tiny.build(spec)
        got = tiny.checksum(model)
        assert got == pytest.approx(spec["checksum"], rel=1e-6), (
            f"{transcript['path']}: the tiny model rebuilt from its spec is not the recorded one (checksum "
            f"{got} vs {spec['checksum']}); torch initialises differently here, so rerun the recorder")
        _MODELS[key] = model
    return _MODELS[key]


def decode(transcript: dict, case: dict, rows: list[int]) -> list:
    """The workbench's decode of the case's prompts `rows` in one batch (sample id = row index)."""
    model = model_of(transcript)
    settings = case["workbench"]
    manager = make_manager(transcript["strategy"], params=settings.get("params", {}))
    config = DecodeConfig(**{"cache": "none", **settings["decode"]})
    return generate(model, [case["prompts"][i] for i in rows], manager, config, sample_ids=rows)


def check_case(transcript: dict, case: dict) -> None:
    """Each prompt alone and all prompts in one batch give the recorded ids and forward counts."""
    expected = case["batch1"]
    excused = {(d["row"], d.get("mode", "any")): d["cause"] for d in case.get("divergences", [])}
    alone = [decode(transcript, case, [i])[0] for i in range(len(case["prompts"]))]
    together = decode(transcript, case, list(range(len(case["prompts"]))))
    wrong = []
    for mode, results in (("batch1", alone), ("batch8", together)):
        for i, (got, want) in enumerate(zip(results, expected)):
            same = got.ids == want["ids"] and got.nfe == want["nfe"]
            listed = (i, mode) in excused or (i, "any") in excused
            if not same and not listed:
                wrong.append(f"{mode} row {i}: ids {got.ids} nfe {got.nfe}, upstream {want['ids']} nfe {want['nfe']}")
            if same and listed:
                wrong.append(f"{mode} row {i} is listed as a divergence but now matches: drop it from the transcript")
    for i, want in enumerate(case.get("batch8") or []):  # the authors' own batched run, where they support one
        if together[i].ids != want and (i, "upstream-batch8") not in excused:
            wrong.append(f"upstream batch row {i}: workbench {together[i].ids}, upstream batched {want}")
    assert not wrong, f"{transcript['path']} case {case['name']!r}:\n" + "\n".join(wrong)
