"""Record golden numbers of LLaDA's own log-likelihood estimator on a tiny random model.

    python benchmarks/reference/record_llada_likelihood.py --upstream /path/to/LLaDA

`--upstream` is a checkout of github.com/ML-GSAI/LLaDA (recorded at commit
b7e6c3565f194352da44b38dd12b6970597309f3). Its `get_log_likelihood.py` is imported from the checkout and run
unchanged (nothing of it is copied here): `get_log_likelihood(model, prompt, answer, mc_num, batch_size,
cfg_scale=0, mask_id)` with `forward_process`, the same estimator as `eval_llada.py`'s `get_loglikelihood`
(its lm-eval model). It needs only `model(ids).logits` and `model.device`, which `tiny.UpstreamView` gives.
Runs on the CPU: LLaDA draws k with `torch.randint` on the model's device and the permutations with
`torch.randperm` on the CPU, both from torch's global generators, so on the CPU one `torch.manual_seed(s)`
fixes every draw.

Writes `tests/reference/llada_likelihood/get_log_likelihood.json`:
- `cases`: per (prompt, answer, mc_num, batch_size), LLaDA's value for each seed s of `seeds`
  (`torch.manual_seed(s)` just before the call). `tests/test_lm_eval_likelihood.py` replays them with the
  workbench's `elbo(..., scheme="llada", generator=torch.Generator().manual_seed(s))` and requires the same
  value (float32 rounding apart).
- `statistics` (documentation, printed as a table too): per case, over `--runs` seeds, the mean and standard
  deviation of LLaDA's function, of the workbench's `llada` scheme and of its default `iid` scheme, and the
  exact expectations of both schemes, enumerated over every masked set (`exact_iid` is the ELBO itself).
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import statistics
import sys
from pathlib import Path

import torch

from recording import ROOT  # beside this script (its folder heads sys.path when it runs), as tiny is

sys.path.insert(0, str(ROOT))  # this checkout's workbench, ahead of an installed one (tiny imports it)

import recording  # noqa: E402
import tiny  # noqa: E402

from workbench.harness.likelihood import elbo  # noqa: E402

UPSTREAM_REPO = "ML-GSAI/LLaDA"
OUT = ROOT / "tests" / "reference" / "llada_likelihood" / "get_log_likelihood.json"
SPEC = tiny.TinySpec(seed=0, init_std=0.5)
SEEDS = list(range(8))
PROMPT = [5, 9, 4, 12, 7, 20, 31]
# (name, answer, mc_num, batch_size): L = 8 at eval_llada.py's batch 32 and get_log_likelihood.py's 16;
# L = 5 (steps of 5/16 and 5/32: rounding and wrap-around at other places); L = 1 (exact).
CASES = [
    ("L8_batch32", [6, 14, 8, 10, 22, 40, 17, 33], 128, 32),
    ("L8_batch16", [6, 14, 8, 10, 22, 40, 17, 33], 128, 16),
    ("L5_batch16", [11, 27, 38, 15, 9], 64, 16),
    ("L5_batch32", [11, 27, 38, 15, 9], 128, 32),
    ("L1_batch4", [44], 8, 4),
]


def load_upstream(path: Path):
    sys.path.insert(0, str(path))
    return importlib.import_module("get_log_likelihood")


@torch.no_grad()
def per_count_nll(model, prompt: list[int], answer: list[int]) -> dict[int, float]:
    """e_l: the mean over every l-subset of answer positions of the summed cross-entropy there, for l = 1..L
    (the model's forward on the masked canvas, as LLaDA computes it: float32 logits, full attention)."""
    length, p = len(answer), len(prompt)
    out = {}
    for count in range(1, length + 1):
        subsets = list(itertools.combinations(range(length), count))
        ids = torch.tensor([prompt + answer] * len(subsets))
        masked = torch.zeros(len(subsets), p + length, dtype=torch.bool)
        for row, subset in enumerate(subsets):
            masked[row, [p + j for j in subset]] = True
        logits = model(ids.masked_fill(masked, tiny.MASK)).double()  # (S, T, V)
        nll = -logits.log_softmax(-1).gather(-1, ids[..., None]).squeeze(-1)  # (S, T)
        out[count] = float((nll * masked).sum(-1).mean())
    return out


def llada_counts(length: int, batch: int, k: int) -> list[int]:
    """The mask counts LLaDA's `forward_process` gives a batch whose first draw is k (its own arithmetic)."""
    x = torch.round(torch.linspace(float(k), k + (batch - 1) * (length / batch), steps=batch)).long()
    return (((x - 1) % length) + 1).tolist()


def exact_expectations(model, prompt, answer, batch: int) -> tuple[float, float]:
    """(E of the iid scheme = the ELBO, E of LLaDA's scheme): both enumerate the masked sets exactly."""
    length = len(answer)
    e = per_count_nll(model, prompt, answer)
    iid = -sum((length / c) * e[c] for c in e) / length
    llada = -sum(sum((length / c) * e[c] for c in llada_counts(length, batch, k)) / batch
                 for k in range(1, length + 1)) / length
    return iid, llada


def mean_std(values: list[float]) -> dict:
    return {"mean": round(statistics.fmean(values), 4), "std": round(statistics.stdev(values), 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", type=Path, required=True, help="checkout of github.com/ML-GSAI/LLaDA")
    parser.add_argument("--runs", type=int, default=200, help="seeds per estimator for the statistics")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    upstream = load_upstream(args.upstream)
    torch.set_num_threads(1)
    model = tiny.build(SPEC)
    view = tiny.UpstreamView(model)

    def theirs(answer, mc_num, batch, seed) -> float:
        torch.manual_seed(seed)
        return upstream.get_log_likelihood(view, torch.tensor(PROMPT), torch.tensor(answer), mc_num=mc_num,
                                           batch_size=batch, cfg_scale=0.0, mask_id=tiny.MASK)

    cases, stats = [], []
    for name, answer, mc_num, batch in CASES:
        cases.append({"name": name, "prompt": PROMPT, "answer": answer, "mc_num": mc_num, "batch_size": batch,
                      "seeds": SEEDS, "values": [theirs(answer, mc_num, batch, s) for s in SEEDS]})
        runs = range(1000, 1000 + args.runs)
        up = [theirs(answer, mc_num, batch, s) for s in runs]
        ours = [elbo(model, PROMPT, answer, samples=mc_num, batch_size=batch, scheme="llada",
                     generator=torch.Generator().manual_seed(s)) for s in runs]
        iid = [elbo(model, PROMPT, answer, samples=mc_num, batch_size=batch, seed=s) for s in runs]
        exact_iid, exact_llada = exact_expectations(model, PROMPT, answer, batch)
        stats.append({"name": name, "runs": args.runs, "llada_function": mean_std(up),
                      "workbench_llada": mean_std(ours), "workbench_iid": mean_std(iid),
                      "exact_iid": round(exact_iid, 4), "exact_llada": round(exact_llada, 4)})
        print(f"{name:11} L={len(answer)} M={mc_num} b={batch}: ELBO {exact_iid:.3f}, E[llada] {exact_llada:.3f}; "
              f"LLaDA's function {stats[-1]['llada_function']}, workbench llada {stats[-1]['workbench_llada']}, "
              f"workbench iid {stats[-1]['workbench_iid']}")
    source = recording.source(UPSTREAM_REPO, recording.commit_of(args.upstream, strict=False),
                              "get_log_likelihood.py", "get_log_likelihood")
    record = recording.transcript(None, source, __file__, cases, model=tiny.described(SPEC, model),
                                  torch=torch.__version__)
    recording.write(args.out, {**record, "statistics": stats})  # compact: lists of numbers on one line
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
