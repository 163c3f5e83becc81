"""The tracer observer and `workbench trace`: steps, convergence and revisions recorded; grid, PNG and HTML."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from plugins.tracer import RevisionCounter, Tracer
from workbench.cli import main as cli
from workbench.decoding.loop import generate
from workbench.models.native import build_random_model
from workbench.models.tokenizer import build_char_tokenizer
from workbench.decoding.registry import make_manager
from workbench.decoding.state import DecodeConfig

PROMPTS = [[4, 5, 6], [7, 8], [9, 10, 11, 12]]
CONFIG = DecodeConfig(block_size=4, max_new_tokens=8)


@pytest.mark.parametrize("strategy, params", [("hard", {"tau_dec": 0.0}), ("spd", {"tau_dec": 0.5}),
                                              ("threshold", {"tau": 0.9}), ("hierarchical", {})])
def test_tracer_records_every_step(tiny_model, strategy, params):
    tracer = Tracer()
    manager = make_manager(strategy, params=params, extra_plugins=[tracer])
    with torch.no_grad():
        results = generate(tiny_model, PROMPTS, manager, CONFIG)
    assert len(tracer.rows) == len(PROMPTS)
    for res, blocks, revisions, unrevised in zip(results, tracer.rows, tracer.last, tracer.last_unrevised):
        assert [len(b.steps) for b in blocks] == res.block_steps  # one StepTrace per forward of the row
        assert revisions == sum(sum(b.revised) for b in blocks)
        committed = [t for b in blocks for t in b.committed]
        assert committed[:len(res.ids)] == res.ids
        # the counterfactual without revisions differs from the output exactly at the revised positions
        assert [u != c for u, c in zip(unrevised, committed, strict=True)] == [r for b in blocks for r in b.revised]
        for b in blocks:
            assert [s.step for s in b.steps] == list(range(1, len(b.steps) + 1))
            assert not any(b.steps[-1].is_mask) and b.steps[-1].finishing
            assert not any(b.steps[0].changed)  # nothing was a token before the first step
            # a promoted position never returns to the mask state
            for before, after in zip(b.steps, b.steps[1:]):
                assert all(m or not a for m, a in zip(before.is_mask, after.is_mask))
            if b.converged_step is not None:
                assert b.converged_step == len(b.steps) and b.steps[-1].converged
    if strategy in ("threshold", "hierarchical"):  # tokens are final when promoted: nothing can be revised
        assert tracer.last == [0] * len(PROMPTS)


def test_evaluate_stores_revision_counts_in_prompt_order(tmp_path):
    from workbench.results.evaluate import RunSpec, evaluate
    from workbench.results.store import ResultsStore
    from workbench.tasks.base import Example

    class EchoTask:
        def check(self, example, output):
            return False

    tokenizer = build_char_tokenizer()
    model = build_random_model(len(tokenizer), seed=5, hidden_size=32, num_layers=2, num_heads=2)
    examples = [Example(prompt=p, answer="", final="", uid=i) for i, p in enumerate(["12=", "7=", "345="])]
    counter = RevisionCounter()
    manager = make_manager("hard", params={"tau_dec": 0.0}, extra_plugins=[counter])
    spec = RunSpec(strategy="hard", params={"tau_dec": 0.0}, plugins=(), trainer=None, model="m", model_hash="h",
                   task="t", decode=CONFIG)
    per_batch = []
    with ResultsStore(tmp_path / "s.db") as store:
        _, samples = evaluate(model, tokenizer, EchoTask(), manager, spec, examples, store, batch_size=2,
                              on_batch=lambda n: per_batch.extend(counter.last),
                              sample_extras=lambda row: {"revisions": counter.last[row]})
    assert [s.extras["revisions"] for s in samples] == per_batch
    assert all("block_steps" in s.extras for s in samples)


def test_evaluate_turns_the_unrevised_output_into_fixed_and_broke_flags(tmp_path):
    from workbench.results.evaluate import RunSpec, evaluate
    from workbench.models.tokenizer import encode
    from workbench.results.store import ResultsStore
    from workbench.tasks.base import Example

    class Task:  # sample 1 is right unless its output is "42"; the others are right only when it is
        def check(self, example, output):
            return (output == "42") != (example.uid == 1)

    tokenizer = build_char_tokenizer()
    model = build_random_model(len(tokenizer), seed=5, hidden_size=32, num_layers=2, num_heads=2)
    examples = [Example(prompt=p, answer="", final="", uid=i) for i, p in enumerate(["12=", "7=", "345="])]
    eos = model.eos_id
    unrevised = {0: encode(tokenizer, "42") + [eos] + encode(tokenizer, "9"), 1: encode(tokenizer, "42") + [eos],
                 2: encode(tokenizer, "7")}
    spec = RunSpec(strategy="hard", params={}, plugins=(), trainer=None, model="m", model_hash="h", task="t",
                   decode=CONFIG)
    with ResultsStore(tmp_path / "s.db") as store:
        _, samples = evaluate(model, tokenizer, Task(), make_manager("hard"), spec, examples, store, batch_size=3,
                              sample_extras=lambda row: {"revisions": 1, "unrevised_ids": unrevised[row]})
    assert [s.output for s in samples] != ["42"] * 3  # the random model's outputs are not the magic answer
    flags = [(s.correct, s.extras["fixed"], s.extras["broke"]) for s in samples]
    assert flags == [(False, False, True), (True, True, False), (False, False, False)]
    assert all("unrevised_ids" not in s.extras for s in samples)  # the counterfactual is not stored


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("trace_model") / "oput"
    tokenizer = build_char_tokenizer()
    build_random_model(len(tokenizer), seed=3, hidden_size=32, num_layers=2, num_heads=2,
                       block_size=8).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_trace_cli_prints_grid_and_writes_png_and_html(model_path, tmp_path, capsys):
    png, page = tmp_path / "trace.png", tmp_path / "trace.html"
    assert cli(["trace", "--strategy", "hard", "--model", str(model_path), "--sample", "2", "--tau", "0",
                "--gen-length", "8", "--png", str(png), "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert "block 1" in out and re.search(r"^step 1 ", out, re.M) and re.search(r"^commit ", out, re.M)
    assert re.search(r"converged at step \d+|forward cap after \d+ steps", out)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "<style>" in text and "<table class='trace'>" in text
    assert "confidence 0." in text or "confidence 1." in text  # tooltips carry the confidences
    assert not re.search(r"<(script|link|img)\b|https?://", text)  # self-contained


def test_trace_cli_bad_input_exits_2(model_path, capsys):
    assert cli(["trace", "--strategy", "nosuch", "--model", str(model_path)]) == 2
    assert cli(["trace", "--strategy", "hard", "--model", str(model_path), "--tau", "2"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 2


def test_trace_shows_revocations_distinctly(model_path, tmp_path, capsys):
    """WINO revokes tokens on this random model: the grid marks them ↺ and counts them per step, the HTML
    gives them their own class, and the heatmap draws."""
    page, png = tmp_path / "t.html", tmp_path / "t.png"
    assert cli(["trace", "--strategy", "wino", "--tau", "0", "--set", "threshold_back=0.99", "--model", str(model_path),
                "--sample", "1", "--gen-length", "8", "--html", str(page), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"↺\d+", out) and "sent back to open this step (revocation)" in " ".join(out.split())
    assert "class='revoked'" in page.read_text(encoding="utf-8") and ", revoked" in page.read_text(encoding="utf-8")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_trace_decodes_a_sample_as_run_does_even_when_sampling(model_path, tmp_path, capsys):
    """trace passes the example's id as its sample id, so a sampled decode is the one `run` stored."""
    store = str(tmp_path / "r.db")
    assert cli(["run", "--strategy", "hard", "--model", str(model_path), "--limit", "3", "--temperature", "1.0",
                "--seed", "4", "--gen-length", "8", "--store", store, "--json"]) == 0
    capsys.readouterr()
    from workbench.results.store import ResultsStore

    with ResultsStore(store, readonly=True) as s:
        (run,) = s.runs()
        stored = {r.index: r.output for r in s.samples(run.key)}
    assert cli(["trace", "--strategy", "hard", "--model", str(model_path), "--sample", "2", "--temperature", "1.0",
                "--seed", "4", "--gen-length", "8", "--json"]) == 0
    traced = json.loads(capsys.readouterr().out)
    assert traced["output"] == stored[2]
