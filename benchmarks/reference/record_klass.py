"""Golden transcripts for `klass`: KLASS's own sampler, `stable_confident_decode` in shkim0116/KLASS's
`src/model/llada_klass.py` (the LLaDA version; `alg="klass"`).

    python benchmarks/reference/record_klass.py --upstream /work/refs/KLASS

Recorded at github.com/shkim0116/KLASS commit ad87ecbe9fdef4a6e93701afbc150cb9213fbcd7. Nothing of it is
copied here: `llada_klass.py` is imported from the checkout as a module of its own (it imports only os,
json, math, numpy and torch) and `stable_confident_decode` makes every decision. The Dream version
(`src/model/dream_klass.py`, a replacement for Dream's `generation_utils.py`) is a different loop (one block,
`>=` on confidence, a one-token fallback); it is described in the notes, not recorded.

What the transcript covers (`tests/reference/klass/greedy.json`), on 8 prompts of mixed lengths (2-9, ids
4..47), each run alone (upstream is batch-1 only: its canvas is `(1, T)` and it calls the model without an
attention mask), generation 24 in blocks of 8:

- `default`: the function's and the LLaDA scripts' defaults: conf_threshold 0.9, kl_threshold 0.01,
  history 2, unmask all, steps = gen_length (one token per step when nothing is ready);
- `loose`: conf_threshold 0.5, kl_threshold 0.05: many tokens ready at once;
- `history3_max_conf`: the same thresholds with a history of 3 KL values and `unmask_strategy=max_conf`;
- `half_steps_min_kl`: conf 0.6, kl 0.015 (the LLaDA GSM8K script's pair), steps = gen_length / 2 (a
  fallback step unmasks two tokens, and a block can end with masks left), `unmask_strategy=min_kl`.

All greedy: upstream's temperature path feeds `add_gumbel_noise(logits)` = exp(logits) / noise to the
softmax as if it were logits, and its scripts all run at temperature 0.

Shims (none changes a decision of `stable_confident_decode`):
- `KlassView` as the model: upstream overwrites its `mask_id` argument with LLaDA-8B's 126336 in the
  function body, so the view maps 126336 to the tiny MASK (1) on the way in; outputs are mapped back. A
  MASK argmax would then be unmasked as the tiny id 1 (LLaDA's own MASK id would have left the position
  masked), so the recorder refuses a case with any MASK argmax at a masked position (none on this model);
- forward counts: upstream decodes every block; the recorder wraps the module's `get_num_transfer_tokens`
  (called once at each block start) to note where each block's forwards begin, and `nfe` is the forwards
  up to the end of the block holding the first EOS. (`tiny.forwards_until_eos_block` cannot be used: a
  block may end with masks left, which the helper would read as that block still running.)

Checked, not shimmed: when a fallback step must unmask more tokens than the block has masks, upstream's
top-k also picks positions at -inf confidence (the prompt, decided tokens) and overwrites them with their
argmax; the workbench never rewrites context. The recorder counts such rewrites from upstream's own inputs
and lists the rows as divergences.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import recording  # beside this script (its folder heads sys.path when it runs), as tiny is
import tiny
from recording import ROOT

UPSTREAM_REPO = "shkim0116/KLASS"
UPSTREAM_PATH = "src/model/llada_klass.py"
UPSTREAM_FUNCTION = "stable_confident_decode"
OUT = ROOT / "tests" / "reference" / "klass"
SPEC = tiny.TinySpec(seed=1, init_std=0.7)  # spread confidences, and no MASK argmax at a masked position
LLADA_MASK = 126336  # hard-coded in upstream's function body
GEN, BLOCK = 24, 8

# (name, upstream keyword arguments, workbench strategy params); steps per block = the workbench's forward cap.
CASES = [
    ("default", dict(steps=24, conf_threshold=0.9, kl_threshold=0.01, kl_history_length=2, unmask_strategy="all"),
     {}),
    ("loose", dict(steps=24, conf_threshold=0.5, kl_threshold=0.05, kl_history_length=2, unmask_strategy="all"),
     {"conf_threshold": 0.5, "kl_threshold": 0.05}),
    ("history3_max_conf", dict(steps=24, conf_threshold=0.5, kl_threshold=0.05, kl_history_length=3,
                               unmask_strategy="max_conf"),
     {"conf_threshold": 0.5, "kl_threshold": 0.05, "history_length": 3, "unmask": "max_conf"}),
    ("half_steps_min_kl", dict(steps=12, conf_threshold=0.6, kl_threshold=0.015, kl_history_length=2,
                               unmask_strategy="min_kl"),
     {"conf_threshold": 0.6, "kl_threshold": 0.015, "unmask": "min_kl"}),
]
# Upstream keeps the MASK logit in its softmax and leaves masks a block could not fill in its output.
REFERENCE_PARAMS = {"mask_logit": "keep", "fill_at_cap": False}
REWRITE = ("a fallback step had to unmask more tokens than the block had masks; upstream's top-k then picked "
           "positions at -inf confidence (prompt or decided tokens) and overwrote them with their argmax, "
           "which the workbench never does")


def load_upstream(upstream: Path):
    """KLASS's `src/model/llada_klass.py`, imported from the checkout as a module of its own."""
    return recording.load_module(upstream, UPSTREAM_PATH, "klass_llada", UPSTREAM_REPO)


class KlassView(tiny.UpstreamView):
    """The tiny model under LLaDA-8B's mask id: inputs' 126336 become the tiny MASK; `mask_tops` counts MASK
    argmaxes at masked positions (see the module docstring). The log holds the mapped ids."""

    mask_tops = 0

    def __call__(self, input_ids, attention_mask=None, *args, **kwargs):
        masked = input_ids == LLADA_MASK
        out = super().__call__(input_ids.where(~masked, tiny.MASK), attention_mask)
        self.mask_tops += int((masked & (out.logits.argmax(-1) == tiny.MASK)).sum())
        return out


def rewrites(log: list[torch.Tensor], final: list[int]) -> int:
    """Positions whose id changed from a non-MASK id between consecutive forwards (or into the output)."""
    seq = [ids[0].tolist() for ids in log] + [final]
    return sum(a != tiny.MASK and a != b for prev, nxt in zip(seq, seq[1:]) for a, b in zip(prev, nxt))


def run_upstream(up, model, prompts: list[list[int]], settings: dict) -> tuple[list[dict], list[int]]:
    """Per prompt, alone: {ids cut after EOS, nfe until the end of the EOS block}, and its context rewrites."""
    rows, rewritten = [], []
    for i, prompt in enumerate(prompts):
        view, starts = KlassView(model), []
        original = up.get_num_transfer_tokens

        def noting_block_start(mask_index, steps):  # called once per block, before its first forward
            starts.append(view.calls)
            return original(mask_index, steps)

        up.get_num_transfer_tokens = noting_block_start
        try:
            out, used = up.stable_confident_decode(view, None, torch.tensor([prompt]), GEN, settings["steps"], BLOCK,
                                                   temperature=0.0, alg="klass", **settings_without_steps(settings))
        finally:
            up.get_num_transfer_tokens = original
        if view.mask_tops:
            sys.exit(f"prompt {i}: upstream's argmax was MASK at a masked position {view.mask_tops} times; "
                     "choose another TinySpec (see the module docstring)")
        assert used == view.calls and len(starts) == GEN // BLOCK, (used, view.calls, starts)
        full = [tiny.MASK if t == LLADA_MASK else t for t in out[0].tolist()]
        generated = full[len(prompt):]
        ids = tiny.cut_after_eos(generated)
        last_block = (len(ids) - 1) // BLOCK
        ends = starts[1:] + [view.calls]
        rows.append({"ids": ids, "nfe": ends[last_block]})
        rewritten.append(rewrites(view.log, full))
    return rows, rewritten


def settings_without_steps(settings: dict) -> dict:
    return {k: v for k, v in settings.items() if k != "steps"}


def record(up, commit: str) -> dict:
    model = tiny.build(SPEC)
    prompts = recording.prompts(SPEC.vocab_size)
    cases = []
    for name, settings, params in CASES:
        rows, rewritten = run_upstream(up, model, prompts, settings)
        case = {"name": name,
                "upstream_settings": {**settings, "gen_length": GEN, "block_length": BLOCK, "temperature": 0.0,
                                      "alg": "klass", "mask_id": LLADA_MASK},
                "workbench": {"params": {**params, **REFERENCE_PARAMS},
                              "decode": {"block_size": BLOCK, "max_new_tokens": GEN,
                                         "max_forwards_per_block": settings["steps"] // (GEN // BLOCK)}},
                "prompts": prompts, "batch1": rows}
        divergent = [{"row": i, "mode": "any", "cause": REWRITE} for i, n in enumerate(rewritten) if n]
        if divergent:
            case["divergences"] = divergent
        cases.append(case)
    upstream = recording.source(UPSTREAM_REPO, commit, UPSTREAM_PATH, UPSTREAM_FUNCTION)
    return recording.transcript("klass", upstream, __file__, cases, model=tiny.described(SPEC, model),
                                note="greedy KLASS (LLaDA version), batch 1 only upstream; the workbench's batch-8 "
                                     "replay must equal its batch-1 rows")


def main() -> None:
    recording.record_main(__doc__, "a checkout of github.com/shkim0116/KLASS", OUT,
                          "folder of the transcript (default: %(default)s)", load_upstream, {"greedy": record},
                          only=False)


if __name__ == "__main__":
    main()
