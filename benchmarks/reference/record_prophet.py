"""Golden transcripts for `prophet` (Prophet early commit) from the authors' own sampler.

    python benchmarks/reference/record_prophet.py --upstream /work/refs/Prophet

Prophet (Li, Zhou, Muhtar, Yin, Yan, Shen, Liang, Vosoughi, Liu, "Diffusion Language Models Know the Answer
Before Decoding", arXiv:2508.19982) is `generate` in `generate_earlyexit.py` of github.com/pixeli99/Prophet
(recorded at commit 460afe41c7063a29a9893675aca07b985997bb83): LLaDA's semi-autoregressive low-confidence
loop (a fixed number of steps per block, `get_num_transfer_tokens` tokens per step) that, before each
step's transfer, averages the top-1 minus top-2 logit gap over an answer region of `answer_length = 5`
positions and, when the average reaches the threshold of the decoding phase (global step / steps below
0.33: 7.5, below 0.67: 5.0, else 2.5), fills every MASK left in the whole canvas with that forward's argmax
and stops. Their evaluation (`eval_llada.py`, `eval.sh`) forces "The answer is" at generated positions
200-202 (`constraints`) and puts the answer region two positions after the last forced token.

Nothing of it is copied here: the module is imported from the checkout and its `generate` makes every
decision (it takes a batch of one, so there is no upstream `batch8`). Cases: the published setting shrunk
(one token per step, forced tokens at ~78 % of the generation, region after them, several blocks); the same
with one block; and the README's call without forced tokens (`answer_start_pos` given directly, two tokens
per step).

Shims (none changes a decision): the model is `tiny.UpstreamView` (the workbench's native model answering
`model(x).logits`, hard ids, full attention; `model.device` for `.to(model.device)`); Prophet's `print` of
each early exit is captured. The recorder refuses a case in which upstream ever transfers a MASK argmax (its
softmax keeps the MASK logit, so LLaDA's loop can write MASK back at a selected position; the workbench's
`mask_logit=keep` mirrors that inside a block but not LLaDA's later re-selection of such a position from an
earlier block), checked from the forward log: every non-exit step must decrease the block's MASK count by
exactly its scheduled k.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import torch

import recording  # beside this script (its folder heads sys.path when it runs), as tiny is
import tiny
from recording import ROOT

UPSTREAM_REPO = "pixeli99/Prophet"
UPSTREAM_PATH = "generate_earlyexit.py"
UPSTREAM_FUNCTION = "generate"
OUT = ROOT / "tests" / "reference" / "prophet" / "prophet.json"
SPEC = tiny.TinySpec(seed=4, init_std=1.5)  # exits in every phase, runs without one, no MASK argmax transferred
ANSWER_LENGTH = 5  # hard-coded in upstream's `generate` (eval_llada.py's `answer_length` is never passed on)
THRESHOLDS = {"early": 7.5, "mid": 5.0, "late": 2.5}  # upstream's defaults (README, eval_llada.py)
FORCED = (10, 11, 12)  # token ids standing in for "The answer is" (any ordinary ids >= 4)

# (name, gen_length, block_length, steps, forced offsets, answer_start offset or None = derived as eval_llada):
CASES = (
    ("published_shape", 32, 8, 32, (24, 25, 26), None),  # eval.sh: 256/32/256, "200:The|201:answer|202:is"
    ("single_block", 16, 16, 16, (9, 10), None),
    ("readme_no_constraints", 16, 8, 8, (), 12),  # README: answer_start_pos given, no constraints
)


def load_upstream(upstream: Path):
    """Prophet's `generate_earlyexit.py`, imported from the checkout as a module of its own."""
    return recording.load_module(upstream, UPSTREAM_PATH, "prophet_generate_earlyexit", UPSTREAM_REPO)


def check_schedule(upstream, log: list[torch.Tensor], final: torch.Tensor, prompt_len: int, gen_length: int,
                   block_length: int, steps: int, exit_step: int | None, where: str) -> None:
    """Refuse a run in which some non-exit step did not unmask exactly its scheduled k positions (a MASK
    argmax was transferred): see the module docstring. `log`: the input of every forward; `final`: the
    returned canvas (what the last step left)."""
    per_block = steps // (gen_length // block_length)
    inputs = [*log, final]
    checked = len(log) if exit_step is None else exit_step - 1  # the exit step fills instead of transferring
    for t in range(checked):
        block, i = divmod(t, per_block)
        lo, hi = prompt_len + block * block_length, prompt_len + (block + 1) * block_length
        k = int(upstream.get_num_transfer_tokens(inputs[block * per_block][:, lo:hi] == tiny.MASK, per_block)[0, i])
        done = int((inputs[t][0, lo:hi] == tiny.MASK).sum()) - int((inputs[t + 1][0, lo:hi] == tiny.MASK).sum())
        if done != k:
            raise RuntimeError(f"{where}: step {t + 1} unmasked {done} positions, scheduled {k} (a MASK argmax "
                               f"was transferred); choose another TinySpec")


def run_case(upstream, view: tiny.UpstreamView, name: str, gen_length: int, block_length: int, steps: int,
             forced: tuple[int, ...], answer_start: int | None, batch: list[list[int]]) -> dict:
    constraints = {pos: FORCED[j] for j, pos in enumerate(forced)}
    derived = max(constraints) + 2 if constraints else None  # eval_llada.py's answer_start
    start = answer_start if answer_start is not None else derived
    rows = []
    for i, prompt in enumerate(batch):
        view.reset()
        x = torch.tensor([prompt])
        with contextlib.redirect_stdout(io.StringIO()):  # upstream prints each early exit
            out, gap = upstream.generate(view, x, steps=steps, gen_length=gen_length, block_length=block_length,
                                         temperature=0.0, cfg_scale=0.0, remasking="low_confidence",
                                         mask_id=tiny.MASK, constraints=constraints or None, analyze_gap=True,
                                         answer_start_pos=len(prompt) + start, early_exit_thresholds=THRESHOLDS)
        info = gap["exit_info"]
        exit_step = info["exit_decision_step"] if info["early_exit_triggered"] else None
        generated = out[0, len(prompt):].tolist()
        if tiny.MASK in generated:
            raise RuntimeError(f"{name} row {i}: upstream left a MASK: {generated}")
        check_schedule(upstream, view.log, out, len(prompt), gen_length, block_length, steps, exit_step,
                       f"{name} row {i}")
        rows.append({"ids": tiny.cut_after_eos(generated),
                     "nfe": tiny.forwards_until_eos_block(view.log, 0, len(prompt), generated, block_length),
                     "exit_step": exit_step})  # documentation only: the replay compares ids and nfe
    params = {"steps": steps, "mask_logit": "keep"}
    if constraints:
        params["constraints"] = "|".join(f"{pos}:{tok}" for pos, tok in constraints.items())
    if answer_start is not None:
        params["answer_start"] = answer_start
    return {"name": name,
            "upstream_settings": {"steps": steps, "gen_length": gen_length, "block_length": block_length,
                                  "temperature": 0.0, "cfg_scale": 0.0, "remasking": "low_confidence",
                                  "mask_id": tiny.MASK, "constraints": {str(k): v for k, v in constraints.items()},
                                  "answer_start_pos": f"prompt_len + {start}", "answer_length": ANSWER_LENGTH,
                                  "early_exit_thresholds": THRESHOLDS},
            "workbench": {"params": params, "decode": {"block_size": block_length, "max_new_tokens": gen_length}},
            "prompts": batch, "batch1": rows}


def main() -> None:
    parser = recording.arguments(__doc__, "checkout of github.com/pixeli99/Prophet", OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    upstream = load_upstream(args.upstream)
    model = tiny.build(SPEC)
    view = tiny.UpstreamView(model)
    batch = recording.prompts(SPEC.vocab_size)
    cases = [run_case(upstream, view, *case, batch) for case in CASES]
    source = recording.source(UPSTREAM_REPO, recording.commit_of(args.upstream), UPSTREAM_PATH, UPSTREAM_FUNCTION)
    transcript = recording.transcript("prophet", source, __file__, cases, model=tiny.described(SPEC, model))
    recording.write(args.out, transcript, compact=False)
    for case in cases:
        print(f"{case['name']}: nfe {[r['nfe'] for r in case['batch1']]}, "
              f"exit {[r['exit_step'] for r in case['batch1']]}, ids {[len(r['ids']) for r in case['batch1']]}")
    print(f"wrote {recording.shown(args.out)}")


if __name__ == "__main__":
    main()
