"""Golden transcripts for dInfer's decoders: `credit`, `iter-smooth`, `hierarchy-remask` (no other strategy
covers them), and dInfer's threshold and hierarchy decoders for `threshold` and `hierarchical`.

    python benchmarks/reference/record_dinfer.py --upstream /work/refs/dInfer

dInfer (Ma et al., "dInfer: An Efficient Inference Framework for Diffusion Language Models",
arXiv:2510.08666; github.com/inclusionAI/dInfer, recorded at commit fce4e32804103baa5d55230dff0352da0cdd6ceb)
runs a decoder (`python/dinfer/decoding/parallel_strategy.py`) inside a diffusion-iteration engine
(`generate_uniform.py`). Recorded here, each from dInfer's own code making every decision:

- `credit`: `CreditThresholdParallelDecoder` (`--use_credit`) inside `BlockWiseDiffusionLLM`, the engine its
  benchmarks and lm-eval harness build: per block, an EMA credit matrix of each position's top-1 tokens
  (decay `decay_beta`, increment p_top1 ** `boost_gamma` at MASK positions) is added to the logits as
  `credit_alpha * log(1 + credit)` before the threshold rule.
- `iter-smooth`: `IterSmoothDiffusionLLM` (`--cont_weight > 0`, no vicinity cache) with
  `ThresholdParallelDecoder`: MASK positions are fed `E(mask) + w * softmax(logits) @ E` from the previous
  forward (the model's `h2e`), `w` growing from `cont_weight_init` by `cont_weight_growth` per forward up to
  `cont_weight`, and the threshold decays from 1 by `threshold_decay` per forward down to the decoder's.
- `threshold` / `hierarchical` (`tests/reference/{threshold,hierarchical}/dinfer.json`):
  `ThresholdParallelDecoder` and `HierarchyDecoder` (the engine's two `parallel_decoding` choices) in
  `BlockWiseDiffusionLLM`, replayed with `mask_logit=keep`.
- `hierarchy-remask`: `get_transfer_index_hierarchy_remask` in `generate_hierarchy`'s loop
  (`decoding="hierarchy_remasking"`): hierarchical span maxima over the MASK positions plus the block's
  decoded positions whose current top-1 probability fell below `remask_threshold`, which are re-decoded or
  sent back to MASK, with at least (remasked + 1) positions decoded per step.

How dInfer's code is run (it cannot run as installed here: its package `__init__` imports vLLM and SGLang,
and its decoders are wrapped in `torch.compile`):
- The decoding modules are imported from the checkout under stub parent packages (so `dinfer/__init__.py`
  and its serving imports are not executed), with `torch.compile` replaced by the identity during the import
  (compilation changes no decision).
- The model is `tiny.UpstreamView` (the workbench's native model, hard ids, full attention), extended here
  with what the engines call: `model(inputs_embeds=...)` and `model.h2e`, dInfer's own `H2Embed` class, read
  from `python/dinfer/model/modeling_fused_olmoe.py` with `ast` and executed alone (its module imports vLLM;
  its tensor-parallel rank and world size are stubbed to 0 and 1: no sequence parallelism), over the native
  model's embedding table.
- `TokenArray.get_generated_tokens` returns the whole canvas: at batch 1 dInfer drops every EOS from the
  output, which loses where the first EOS was (output formatting only).
- Engines run with `BlockIteratorFactory(start_block_align=False)` (blocks start after the prompt, as in the
  workbench; dInfer's scripts align the first block to absolute multiples of the block length, the
  workbench's documented deliberate difference) and `maximum_unroll=1`: dInfer's loop unrolling runs up to
  `masks // expected_tpf` forwards before testing whether the block is finished; the extra forwards change
  no token (and would advance iter-smooth's schedule), and the workbench never forwards a finished block.
- Batched runs: dInfer's engine takes no attention mask (its own scripts right-pad prompts with MASK, which
  it then decodes as part of the answer); `batch8` here left-pads with PAD and the view masks the padding,
  as the workbench does, so the engine's batched semantics are otherwise its own (one forward for every row
  until the whole batch has finished a block; iter-smooth's forward counter is shared by the batch).
- `hierarchy-remask`: at this commit `generate_hierarchy(decoding="hierarchy_remasking")` raises TypeError
  (it passes the `remasking` argument positionally to `get_transfer_index_hierarchy_remask`, which has no
  such parameter); the recorder substitutes an adapter that drops that one argument and calls dInfer's
  function as intended, so dInfer's own loop and rule run.
- Every forward goes through a guard: dInfer's loops run until no MASK is left, so a block whose open
  positions all predict MASK (the MASK logit stays in dInfer's softmax) never ends; the recorder refuses such
  a case (choose another TinySpec).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import sys
import types
from pathlib import Path
from typing import Optional

import torch
from torch import nn

import recording  # beside this script (its folder heads sys.path when it runs), as tiny is
import tiny
from recording import ROOT

UPSTREAM_REPO = "inclusionAI/dInfer"
DECODING = Path("python/dinfer/decoding")
H2E_SOURCE = Path("python/dinfer/model/modeling_fused_olmoe.py")
SPEC = tiny.TinySpec(seed=2, init_std=1.6)  # EOS in about half the rows, a few MASK argmaxes, no stuck block
# hierarchy-remask gets stuck on MASK argmaxes with SPEC (see the docstring); this one never is, and has EOS rows.
REMASK_SPEC = tiny.TinySpec(seed=0, init_std=1.6)
STUCK_FORWARDS = 96  # per run: far above any finishing run here (see the docstring)


# -- dInfer, imported from the checkout ----------------------------------------------------------------------


def load_upstream(upstream: Path) -> types.SimpleNamespace:
    """dInfer's decoding modules and `H2Embed`, from the checkout (see the module docstring)."""
    recording.require(upstream, DECODING / "parallel_strategy.py", UPSTREAM_REPO)
    for name, path in (("dinfer", upstream / "python" / "dinfer"), ("dinfer.decoding", upstream / DECODING)):
        package = types.ModuleType(name)
        package.__path__ = [str(path)]  # a namespace for the submodules; its __init__ is never run
        sys.modules[name] = package
    compile_ = torch.compile
    torch.compile = lambda fn=None, **kwargs: fn if fn is not None else (lambda f: f)
    try:
        modules = {name: importlib.import_module(f"dinfer.decoding.{name}")
                   for name in ("utils", "parallel_strategy", "generate_uniform", "generate_hierarchy")}
    finally:
        torch.compile = compile_
    modules["utils"].TokenArray.get_generated_tokens = lambda self: self.data  # the whole canvas, EOS kept
    return types.SimpleNamespace(**modules, H2Embed=load_h2embed(upstream / H2E_SOURCE))


def load_h2embed(path: Path) -> type:
    """dInfer's `H2Embed` class, executed alone from its source file (its module imports vLLM)."""
    tree = ast.parse(path.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "H2Embed")
    namespace = {"torch": torch, "nn": nn, "Optional": Optional,
                 "get_tensor_model_parallel_rank": lambda: 0, "get_tensor_model_parallel_world_size": lambda: 1}
    exec(compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec"), namespace)
    return namespace["H2Embed"]


class EngineView(tiny.UpstreamView):
    """`UpstreamView` as dInfer's engines call it: ids or `inputs_embeds=`, `h2e`, left padding it was told
    about (`pads`: pad count per row), and a forward guard."""

    def __init__(self, model, h2embed: type):
        super().__init__(model)
        self.h2e = h2embed(model.embed, tau=1.0)
        self.pads: list[int] | None = None

    def __call__(self, input_ids=None, attention_mask=None, *args, inputs_embeds=None, **kwargs):
        if self.calls >= STUCK_FORWARDS:
            raise RuntimeError(f"upstream still has MASK after {STUCK_FORWARDS} forwards (stuck on MASK argmaxes)")
        shape = (input_ids if input_ids is not None else inputs_embeds).shape[:2]
        valid = None
        if self.pads is not None:
            valid = torch.arange(shape[1])[None, :] >= torch.tensor(self.pads)[:, None]  # (N, T)
        if inputs_embeds is None:
            return super().__call__(input_ids, valid)
        self.calls += 1
        valid = torch.ones(shape, dtype=torch.bool) if valid is None else valid
        with torch.no_grad():
            logits = self.model.denoise(inputs_embeds, block_ids=torch.zeros(shape, dtype=torch.long), valid=valid)
        return types.SimpleNamespace(logits=logits)


# -- runs --------------------------------------------------------------------------------------------------------


def left_padded(batch: list[list[int]]) -> tuple[torch.Tensor, list[int]]:
    width = max(len(p) for p in batch)
    pads = [width - len(p) for p in batch]
    return torch.tensor([[tiny.PAD] * pad + p for pad, p in zip(pads, batch)]), pads


def engine_runs(make_engine, view: EngineView, batch: list[list[int]], gen_length: int, block_length: int,
                name: str, batched: bool = True) -> tuple[list[dict], list[list[int]] | None]:
    """(batch1 rows, batch8 ids or None) of an engine built fresh for every run by `make_engine()` (decoders
    keep per-block state between calls)."""
    rows = []
    for i, prompt in enumerate(batch):
        view.reset()
        view.pads = None
        engine = make_engine()
        out = engine.generate(torch.tensor([prompt]), gen_length=gen_length, block_length=block_length)
        generated = out[0, len(prompt):].tolist()
        check_no_mask(generated, f"{name} row {i}")
        # The engine stops after the block that holds the first EOS (early_stop), as the workbench does.
        rows.append({"ids": tiny.cut_after_eos(generated), "nfe": engine.num_forwards})
    if not batched:
        return rows, None
    view.reset()
    ids, view.pads = left_padded(batch)
    out = make_engine().generate(ids, gen_length=gen_length, block_length=block_length)
    view.pads = None
    batched = [tiny.cut_after_eos(out[i, ids.shape[1]:].tolist()) for i in range(len(batch))]
    for i, row in enumerate(batched):
        check_no_mask(row, f"{name} batch8 row {i}")
    return rows, batched


def check_no_mask(ids: list[int], where: str) -> None:
    if tiny.MASK in tiny.cut_after_eos(ids):
        raise RuntimeError(f"{where}: upstream left a MASK: {ids}")


# (name, tau, credit_alpha, boost_gamma, decay_beta): the class defaults at eval_dinfer.py's threshold 0.9,
# a lower threshold, and a stronger, shorter-lived credit.
CREDIT_CASES = (("defaults", 0.9, 0.7, 0.2, 0.8), ("threshold0.7", 0.7, 0.7, 0.2, 0.8),
                ("strong_credit", 0.9, 1.5, 0.5, 0.5))
CREDIT_SHAPE = (24, 8)  # gen_length, block_length


def record_credit(up, view: EngineView, batch: list[list[int]]) -> list[dict]:
    gen_length, block_length = CREDIT_SHAPE
    cases = []
    for name, tau, alpha, gamma, beta in CREDIT_CASES:
        def make_engine():
            decoder = up.parallel_strategy.CreditThresholdParallelDecoder(
                credit_alpha=alpha, boost_gamma=gamma, decay_beta=beta, temperature=0, threshold=tau,
                mask_id=tiny.MASK, eos_id=tiny.EOS)
            return up.generate_uniform.BlockWiseDiffusionLLM(
                view, decoder, up.utils.BlockIteratorFactory(start_block_align=False), early_stop=True,
                maximum_unroll=1)
        rows, batched = engine_runs(make_engine, view, batch, gen_length, block_length, f"credit {name}")
        cases.append({
            "name": name,
            "upstream_settings": {"class": "CreditThresholdParallelDecoder", "engine": "BlockWiseDiffusionLLM",
                                  "threshold": tau, "credit_alpha": alpha, "boost_gamma": gamma, "decay_beta": beta,
                                  "temperature": 0, "use_float64": False, "gen_length": gen_length,
                                  "block_length": block_length, "early_stop": True, "maximum_unroll": 1,
                                  "start_block_align": False, "cache": None},
            "workbench": {"params": {"tau": tau, "credit_alpha": alpha, "boost_gamma": gamma, "decay_beta": beta,
                                     "mask_logit": "keep"},
                          # dInfer's loop has no forward cap: the workbench's must not bind
                          "decode": {"block_size": block_length, "max_new_tokens": gen_length,
                                     "max_forwards_per_block": 4 * block_length}},
            "prompts": batch, "batch1": rows, "batch8": batched})
    return cases


# (name, gen_length, block_length, tau, schedule): one block at the class defaults (the guide's cont_weight 0.3,
# eval_dinfer.py's threshold 0.9); one block with a faster schedule (the threshold reaches 0.7 after 3
# forwards, the weight 0.6 after 5); several blocks, where dInfer smooths the inputs after the current block
# too (the workbench's canvas view).
DEFAULT_SCHEDULE = {"cont_weight": 0.3, "cont_weight_init": 0.15, "cont_weight_growth": 0.02, "threshold_decay": 0.02}
FAST_SCHEDULE = {"cont_weight": 0.6, "cont_weight_init": 0.1, "cont_weight_growth": 0.1, "threshold_decay": 0.1}
SMOOTH_CASES = (("single_block", 16, 16, 0.9, DEFAULT_SCHEDULE), ("single_block_fast", 16, 16, 0.7, FAST_SCHEDULE),
                ("blocks", 24, 8, 0.9, DEFAULT_SCHEDULE))
# Why dInfer's own batched run differs from the same rows alone (several blocks only; the workbench's
# batch 8 equals its batch 1, and both equal dInfer's batch-1 runs).
SHARED_COUNTER = ("dInfer's IterationSmooth counts forwards per generate call (iter_no, shared by every row of the "
                  "batch, and rows that finished a block are forwarded until the whole batch has): a row's "
                  "smoothing weight and threshold schedule depend on its batch from the second block on; the "
                  "workbench counts forwards per sample")


def record_iter_smooth(up, view: EngineView, batch: list[list[int]]) -> list[dict]:
    cases = []
    for name, gen_length, block_length, tau, schedule in SMOOTH_CASES:
        def make_engine():
            decoder = up.parallel_strategy.ThresholdParallelDecoder(temperature=0, threshold=tau, mask_id=tiny.MASK,
                                                                    eos_id=tiny.EOS)
            return up.generate_uniform.IterSmoothDiffusionLLM(
                view, decoder, up.utils.BlockIteratorFactory(start_block_align=False), early_stop=True,
                cache_factory=None, maximum_unroll=1, **schedule)
        rows, batched = engine_runs(make_engine, view, batch, gen_length, block_length, f"iter-smooth {name}")
        divergences = [{"row": i, "mode": "upstream-batch8", "cause": SHARED_COUNTER}
                       for i, (row, ids) in enumerate(zip(rows, batched)) if row["ids"] != ids]
        cases.append({
            "name": name,
            "upstream_settings": {"class": "IterSmoothDiffusionLLM", "decoder": "ThresholdParallelDecoder",
                                  "threshold": tau, **schedule, "h2e_tau": 1.0,
                                  "temperature": 0, "gen_length": gen_length, "block_length": block_length,
                                  "early_stop": True, "maximum_unroll": 1, "start_block_align": False,
                                  "cache": None},
            "workbench": {"params": {"tau": tau, **schedule, "mask_logit": "keep"},
                          "decode": {"block_size": block_length, "max_new_tokens": gen_length,
                                     "max_forwards_per_block": 4 * block_length}},
            "prompts": batch, "batch1": rows, "batch8": batched, **({"divergences": divergences} if divergences else {})})
    return cases


# (name, threshold, low_threshold, remask_threshold): dInfer's tests' values, the guide's hierarchical pair,
# and a remask threshold high enough to take tokens back often.
REMASK_CASES = (("test_values", 0.9, 0.4, 0.4), ("guide_pair", 0.92, 0.62, 0.4), ("remask0.7", 0.9, 0.4, 0.7))
REMASK_SHAPE = (24, 8)


def record_hierarchy_remask(up, view: EngineView, batch: list[list[int]]) -> list[dict]:
    gen_length, block_length = REMASK_SHAPE
    remask = up.parallel_strategy.get_transfer_index_hierarchy_remask

    def as_intended(logits, temperature, remasking, mask_index, x, num_transfer_tokens, mask_id, threshold=None,
                    **kwargs):
        """generate_hierarchy's call with its extra `remasking` positional dropped (see the docstring)."""
        return remask(logits, temperature, mask_index, x, num_transfer_tokens, mask_id, threshold, **kwargs)

    up.generate_hierarchy.get_transfer_index_hierarchy_remask = as_intended
    cases = []
    for name, high, low, remask_threshold in REMASK_CASES:
        rows = []
        for i, prompt in enumerate(batch):
            view.reset()
            out, _ = up.generate_hierarchy.generate_hierarchy(
                view, torch.tensor([prompt]), steps=gen_length, gen_length=gen_length, block_length=block_length,
                temperature=0.0, mask_id=tiny.MASK, decoding="hierarchy_remasking", threshold=high,
                low_threshold=low, remask_threshold=remask_threshold)
            generated = out[0, len(prompt):].tolist()
            check_no_mask(generated, f"hierarchy-remask {name} row {i}")
            # No EOS stop upstream: count the forwards up to the end of the block holding the first EOS.
            rows.append({"ids": tiny.cut_after_eos(generated),
                         "nfe": tiny.forwards_until_eos_block(view.log, 0, len(prompt), generated, block_length)})
        cases.append({
            "name": name,
            "upstream_settings": {"function": "generate_hierarchy", "decoding": "hierarchy_remasking",
                                  "threshold": high, "low_threshold": low, "remask_threshold": remask_threshold,
                                  "temperature": 0.0, "steps": gen_length, "gen_length": gen_length,
                                  "block_length": block_length},
            "workbench": {"params": {"threshold": high, "low_threshold": low, "remask_threshold": remask_threshold,
                                     "mask_logit": "keep"},
                          "decode": {"block_size": block_length, "max_new_tokens": gen_length,
                                     "max_forwards_per_block": 4 * block_length}},
            "prompts": batch, "batch1": rows})
    return cases


# dInfer's decoders the builtins cover: ThresholdParallelDecoder (`threshold --set mask_logit=keep`) and
# HierarchyDecoder (`hierarchical --set mask_logit=keep`), in the same engine. (name, decoder, settings).
COVERED_CASES = {
    "threshold": (("threshold0.9", {"threshold": 0.9}), ("threshold0.6", {"threshold": 0.6})),
    "hierarchical": (("guide_pair", {"threshold": 0.92, "low_threshold": 0.62}),
                     ("class_low", {"threshold": 0.9, "low_threshold": 0.4})),
}


def record_covered(strategy: str):
    """Recorder of a builtin's dInfer transcript (see COVERED_CASES)."""
    def record(up, view: EngineView, batch: list[list[int]]) -> list[dict]:
        gen_length, block_length = CREDIT_SHAPE
        cases = []
        for name, settings in COVERED_CASES[strategy]:
            def make_engine():
                decoder = (up.parallel_strategy.ThresholdParallelDecoder if strategy == "threshold" else
                           up.parallel_strategy.HierarchyDecoder)(temperature=0, mask_id=tiny.MASK, eos_id=tiny.EOS,
                                                                  **settings)
                return up.generate_uniform.BlockWiseDiffusionLLM(
                    view, decoder, up.utils.BlockIteratorFactory(start_block_align=False), early_stop=True,
                    maximum_unroll=1)
            if strategy == "threshold":
                rows, batched = engine_runs(make_engine, view, batch, gen_length, block_length, f"{strategy} {name}")
                params = {"tau": settings["threshold"], "mask_logit": "keep"}
            else:  # HierarchyDecoder asserts a batch of one
                rows, batched = engine_runs(make_engine, view, batch, gen_length, block_length, f"{strategy} {name}",
                                            batched=False)
                params = {**settings, "mask_logit": "keep"}
            cases.append({
                "name": name,
                "upstream_settings": {"class": "ThresholdParallelDecoder" if strategy == "threshold" else
                                      "HierarchyDecoder", "engine": "BlockWiseDiffusionLLM", **settings,
                                      "temperature": 0, "gen_length": gen_length, "block_length": block_length,
                                      "early_stop": True, "maximum_unroll": 1, "start_block_align": False,
                                      "cache": None},
                "workbench": {"params": params,
                              "decode": {"block_size": block_length, "max_new_tokens": gen_length,
                                         "max_forwards_per_block": 4 * block_length}},
                "prompts": batch, "batch1": rows, **({"batch8": batched} if batched else {})})
        return cases
    return record


RECORDINGS = (  # (workbench strategy, file, what ran, recorder, model)
    ("credit", "python/dinfer/decoding/parallel_strategy.py", "CreditThresholdParallelDecoder", record_credit, SPEC),
    ("iter-smooth", "python/dinfer/decoding/generate_uniform.py", "IterSmoothDiffusionLLM", record_iter_smooth,
     SPEC),
    ("hierarchy-remask", "python/dinfer/decoding/parallel_strategy.py", "get_transfer_index_hierarchy_remask",
     record_hierarchy_remask, REMASK_SPEC),
    ("threshold", "python/dinfer/decoding/parallel_strategy.py", "ThresholdParallelDecoder",
     record_covered("threshold"), SPEC),
    ("hierarchical", "python/dinfer/decoding/parallel_strategy.py", "HierarchyDecoder",
     record_covered("hierarchical"), SPEC),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", type=Path, required=True, help="checkout of github.com/inclusionAI/dInfer")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "tests" / "reference")
    parser.add_argument("--only", choices=[r[0] for r in RECORDINGS], help="record one strategy")
    args = parser.parse_args()
    torch.set_num_threads(1)
    up = load_upstream(args.upstream)
    commit = recording.commit_of(args.upstream)
    for strategy, path, function, record, spec in RECORDINGS:
        if args.only and strategy != args.only:
            continue
        model = tiny.build(spec)
        view = EngineView(model, up.H2Embed)
        cases = record(up, view, recording.prompts(spec.vocab_size))
        transcript = recording.transcript(strategy, recording.source(UPSTREAM_REPO, commit, path, function), __file__,
                                          cases, model=tiny.described(spec, model))
        out = recording.write(args.out_dir / strategy / "dinfer.json", transcript, compact=False)
        for case in cases:
            rows = case["batch1"]
            same = sum(r["ids"] == b for r, b in zip(rows, case.get("batch8") or [])) if case.get("batch8") else "-"
            print(f"{strategy} {case['name']}: nfe {[r['nfe'] for r in rows]}, ids {[len(r['ids']) for r in rows]}, "
                  f"upstream batch8 = batch1 in {same} rows")
        print(f"wrote {recording.shown(out)}")


if __name__ == "__main__":
    main()
