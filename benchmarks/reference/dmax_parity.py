"""DMax's own decoding rule against the workbench's `spd`, `hard` and `threshold` on the shipped models.

    git clone https://github.com/czg1225/DMax ../DMax
    python benchmarks/reference/dmax_parity.py --upstream ../DMax --model oput --tau-dec 0.95 --samples 500

`--upstream` is a checkout of DMax (written against commit 82bc29ec). Nothing
of it is copied here: its dInfer fork's `dinfer/decoding/parallel_strategy.py` is imported from the checkout
and its `ThresholdParallelDecoder` does every decision, while the loop below drives it the way
`BlockDiffusionRunner.decode_uniform` / `.decode` (`dinfer/decoding/generate_uniform.py`) do:

- `spd`: per block, at most `block_length` steps; each step one forward, then `decoder.decode_uniform(...)`,
  which promotes (contiguous prefix >= threshold, else the leftmost mask), re-predicts the token positions,
  decides the early stop (every active position >= 0.9, or nothing changed) and returns the soft (SPD)
  embeddings the next forward is fed. The loop breaks on its flag; positions still MASK stay MASK.
- `hard`: the same call, but the next forward is fed the hard ids of the canvas (E(x): e_mask at masks, the
  current token elsewhere) instead of the returned soft embeddings: DMax's rule with hard-token inputs, the
  paper's "OPUT without SPD" ablation (the repository has no separate function for it).
- `threshold`: `decoder.decode(...)` (dInfer's threshold rule: MASK argmaxes never promoted, margin 1e-5)
  while the block holds a MASK, as `BlockRunner.decode` loops. dInfer has no forward cap there; a block whose
  every open position predicts MASK would loop for ever, so the driver stops it after `STUCK_FORWARDS` and
  counts it as `stuck`.

Shims (none changes a decision): the shipped native model is wrapped as what the decoder calls, logits of the
block and an `nn.Embedding` over the model's input table; forwards recompute the whole canvas with the
workbench's block-causal layout (the prompt is block 0, blocks of B from the first generated position: the
workbench's deliberate difference from DMax's absolute block alignment, so both sides see the same blocks)
instead of DMax's KV cache (exact on a block-causal model); `torch.compile` is disabled
(`torch._dynamo.config.disable`), so the decorated functions run eagerly on the CPU; each prompt is decoded
alone (DMax's evaluation runs batch 1; its early stop is a decision over the whole batch) and the row stops
after the block holding its EOS, as dInfer's `early_stop` does at batch 1. NFE counts the block forwards;
DMax also counts one prefill forward (the workbench's `nfe_total`).

The workbench decodes the same examples with `generate` in batches (`--batch-size`, as `workbench run`),
with the reference switches `mask_logit=keep fill_at_cap=false` for hard / spd and `mask_logit=keep` for
threshold (`--set` adds or overrides parameters, e.g. `--set fill_at_cap=true` to see the default). Per cell
it prints rows identical (ids and NFE), ids identical, NFE identical, each side's accuracy (DMax's ids scored
as the workbench scores its own: special tokens, MASK included, dropped from the text, as DMax's evaluation
decodes with `skip_special_tokens=True`) and the rows with positions left MASK (`unf`); `--show N` prints the
first N differing rows.

`--dmax-arithmetic` (a diagnosis) has the workbench compute with DMax's float arithmetic where it differs in
the last bit (confidences, SPD's hybrid, no KV cache); see `dmax_arithmetic`. `--mask-logit-effect` runs no DMax: per cell, the workbench with `mask_logit=remove` against `keep`, every
other parameter at the strategy's default (or `--set`), and prints the rows whose ids (and NFE) differ.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import types
from pathlib import Path

import torch

import recording  # beside this script

DECODING = Path("dInfer/python/dinfer/decoding")  # DMax's dInfer fork, inside the checkout
TAU_ACC = 0.9  # hard-coded in DMax's decode_uniform (`max_probs[active_index] >= 0.9`); the workbench's default
STUCK_FORWARDS = 256  # a threshold block still masked after this many forwards never finishes (see docstring)
STRATEGIES = ("spd", "hard", "threshold")
REFERENCE_SWITCHES = {"spd": {"mask_logit": "keep", "fill_at_cap": False},
                      "hard": {"mask_logit": "keep", "fill_at_cap": False},
                      "threshold": {"mask_logit": "keep"}}


def load_dmax(upstream: Path):
    """DMax's `parallel_strategy` module, imported from the checkout as a package of its own (its `__init__`
    pulls in serving code this needs none of)."""
    folder = recording.require(upstream, DECODING / "parallel_strategy.py", "czg1225/DMax").parent
    torch._dynamo.config.disable = True  # its @torch.compile functions run eagerly (no compiler needed on the CPU)
    package = types.ModuleType("dmax_decoding")
    package.__path__ = [str(folder)]
    sys.modules["dmax_decoding"] = package
    return importlib.import_module("dmax_decoding.parallel_strategy"), importlib.import_module("dmax_decoding.utils")


class NativeView:
    """The shipped native model as DMax's loop needs it: `block_logits(x, start, end, block_embeds)` and the
    input embedding layer. Forwards recompute the canvas [0, end) with the workbench's block-causal layout."""

    def __init__(self, model, prompt_len: int, block: int):
        self.model, self.prompt_len, self.block = model, prompt_len, block
        table = model.embedding_table()
        self.embedding = torch.nn.Embedding.from_pretrained(table.detach(), freeze=True)

    def block_logits(self, ids: torch.Tensor, start: int, end: int, block_embeds: torch.Tensor | None):
        """(1, end - start, V) logits of positions [start, end); block_embeds (1, L, D) replaces their inputs."""
        table = self.model.embedding_table()
        embeds = table[ids[:, :end]]
        if block_embeds is not None:
            embeds = torch.cat([embeds[:, :start], block_embeds.to(embeds.dtype)], dim=1)
        p = self.prompt_len
        block_ids = torch.tensor([0] * p + [1 + (j - p) // self.block for j in range(p, end)]).view(1, -1)
        valid = torch.ones_like(block_ids, dtype=torch.bool)
        return self.model.denoise(embeds, block_ids=block_ids, valid=valid)[:, start:end].float()


@torch.no_grad()
def dmax_decode(ps, utils, model, prompt: list[int], strategy: str, tau: float, block: int, gen_len: int,
                mask_id: int, eos_id: int) -> dict:
    """One prompt through DMax's decoder: {"ids": generated ids (MASK kept), "nfe": block forwards, "stuck"}."""
    view = NativeView(model, len(prompt), block)
    x = utils.TokenArray(torch.tensor([prompt]), gen_len, mask_id, eos_id, torch.device("cpu"))
    decoder = ps.ThresholdParallelDecoder(temperature=0, threshold=tau, mask_id=mask_id, eos_id=eos_id)
    p, nfe, stuck = len(prompt), 0, False
    for start in range(p, p + gen_len, block):
        end = min(start + block, p + gen_len)
        if strategy == "threshold":  # BlockRunner.decode: forward while the block holds a MASK
            steps = 0
            while bool((x[:, start:end] == mask_id).any()):
                if steps == STUCK_FORWARDS:
                    stuck = True
                    break
                decoder.decode(view.block_logits(x.data, start, end, None), start, end, x)
                steps += 1
            nfe += steps
        else:  # BlockDiffusionRunner.decode_uniform: at most block_length steps, stop on the decoder's flag
            active = x[:, start:end] == mask_id
            embeds, step = None, 0
            while step < block:
                step += 1
                logits = view.block_logits(x.data, start, end, embeds if strategy == "spd" else None)
                stop, embeds = decoder.decode_uniform(logits, start, end, x, active, view.embedding,
                                                      prev_embeddings=embeds if strategy == "spd" else None)
                nfe += 1
                if stop:
                    break
        if bool((x[:, start:end] == eos_id).any()):  # early_stop: a batch-1 run ends after its EOS block
            end_all = end
            break
    else:
        end_all = p + gen_len
    ids = x.data[0, p:end_all].tolist()
    ids = ids[:ids.index(eos_id) + 1] if eos_id in ids else ids
    return {"ids": ids, "nfe": nfe, "stuck": stuck}


def dmax_arithmetic() -> None:
    """Diagnosis only (`--dmax-arithmetic`): the workbench computes in this process with DMax's float
    arithmetic where it differs in the last bit. (1) conf = exp(logit(top) - logsumexp(logits)) in float32
    (DMax's `_get_prob_stats`) instead of the largest softmax probability; (2) SPD's hybrid as
    `E(top) p + e_mask (1 - p)` and `||E(top)|| p + ||e_mask|| (1 - p)` (DMax's `decode_uniform`) instead of
    `lerp`; (3) with `--cache none`, which the flag sets, the forward recomputes the canvas as the driver does
    instead of reading the prefix KV cache. Each changes numbers only in the last bit, but SPD feeds `conf`
    back as hybrid weights, and on the choice task two right digits often sit near p 0.5 each, so the last
    bit can flip a later argmax. With all three, the rows that differ become identical. Patches the loop's
    `predict` and the embedders' `hybrid`."""
    import plugins.embedders as embedders
    import workbench.decoding.loop as loop

    predict = loop.predict

    def predict_as_dmax(logits, temperature, rng, rows, want_probs):
        top, conf, probs = predict(logits, temperature, rng, rows, want_probs)
        work = logits.to(torch.promote_types(logits.dtype, torch.float32))
        conf = (work.gather(-1, top[..., None]).squeeze(-1) - work.logsumexp(-1)).exp().float()
        return top, conf, probs

    def hybrid_as_dmax(e_top, e_mask, p, top_norm=None):
        dtype, work = e_top.dtype, torch.promote_types(e_top.dtype, torch.float32)
        e_top, e_mask, p = e_top.to(work), e_mask.to(work), p.to(work)[..., None]
        top_norm = e_top.norm(dim=-1, keepdim=True) if top_norm is None else top_norm.to(work)[..., None]
        mixed = e_top * p + e_mask * (1 - p)
        target = top_norm * p + e_mask.norm() * (1 - p)
        return (mixed * (target / (mixed.norm(dim=-1, keepdim=True) + embedders.HYBRID_EPS))).to(dtype)

    loop.predict = predict_as_dmax
    embedders.hybrid = hybrid_as_dmax


def workbench_api():
    """The workbench functions this script uses (one place to follow a package move)."""
    from workbench import DecodeConfig, generate, make_manager
    from workbench.models.folders import default_model_path
    from workbench.models.loading import load_model
    from workbench.models.tokenizer import decode, encode_prompt
    from workbench.tasks import DEFAULT_TASK, load_task

    return types.SimpleNamespace(generate=generate, make_manager=make_manager, DecodeConfig=DecodeConfig,
                                 default_model_path=default_model_path, load_model=load_model, decode=decode,
                                 encode_prompt=encode_prompt, DEFAULT_TASK=DEFAULT_TASK, load_task=load_task)


def workbench_decode(wb, model, prompts, examples, strategy: str, params: dict, config, batch_size: int) -> list:
    """`RowResult`s of the workbench's decode, in batches of `batch_size` as `workbench run` decodes."""
    manager = wb.make_manager(strategy, params=params)
    got = []
    for i in range(0, len(prompts), batch_size):
        got += wb.generate(model, prompts[i:i + batch_size], manager, config,
                           sample_ids=[ex.uid for ex in examples[i:i + batch_size]])
    return got


def accuracy(wb, tokenizer, task, examples, outputs: list[list[int]]) -> float:
    """% right, each output scored as the workbench scores it (special tokens, MASK included, dropped from the
    text, as DMax's evaluation decodes with `skip_special_tokens=True`)."""
    return 100 * sum(bool(task.check(ex, wb.decode(tokenizer, ids))) for ex, ids in zip(examples, outputs)) / len(
        outputs)


def main_threshold(strategy: str) -> str:
    return "tau" if strategy == "threshold" else "tau_dec"


def run_cell(wb, ps, utils, model, tokenizer, task, examples, strategy, tau, args, sets) -> dict:
    """DMax and the workbench (with the reference switches, then `--set`) on one (model, strategy, tau)."""
    block, gen_len = args.block_size, args.gen_length or task.response_len
    prompts = [wb.encode_prompt(tokenizer, ex.prompt, False) for ex in examples]
    ref = [dmax_decode(ps, utils, model, pr, strategy, tau, block, gen_len, model.mask_id, model.eos_id)
           for pr in prompts]
    params = {main_threshold(strategy): tau, **REFERENCE_SWITCHES[strategy], **sets}
    config = wb.DecodeConfig(block_size=block, max_new_tokens=gen_len, cache=args.cache)
    got = workbench_decode(wb, model, prompts, examples, strategy, params, config, args.batch_size)
    same_ids = [r["ids"] == g.ids for r, g in zip(ref, got)]
    same_nfe = [r["nfe"] == g.nfe for r, g in zip(ref, got)]
    return {
        "n": len(examples), "rows": sum(a and b for a, b in zip(same_ids, same_nfe)), "ids": sum(same_ids),
        "nfe": sum(same_nfe), "acc_ref": accuracy(wb, tokenizer, task, examples, [r["ids"] for r in ref]),
        "acc_wb": accuracy(wb, tokenizer, task, examples, [g.ids for g in got]),
        "unfilled_ref": sum(model.mask_id in r["ids"] for r in ref),
        "unfilled_wb": sum(bool(g.extras.get("unfilled")) for g in got), "stuck": sum(r["stuck"] for r in ref),
        "diffs": [(ex.prompt, r, g) for ex, r, g, a, b in zip(examples, ref, got, same_ids, same_nfe)
                  if not (a and b)],
    }


def mask_logit_effect(wb, model, tokenizer, task, examples, strategy, tau, args, sets) -> dict:
    """The workbench alone: the same cell with `mask_logit=remove` and with `mask_logit=keep` (every other
    parameter as given: the strategy's defaults unless `--set` says otherwise)."""
    gen_len = args.gen_length or task.response_len
    prompts = [wb.encode_prompt(tokenizer, ex.prompt, False) for ex in examples]
    config = wb.DecodeConfig(block_size=args.block_size, max_new_tokens=gen_len, cache=args.cache)
    out = {rule: workbench_decode(wb, model, prompts, examples, strategy,
                                  {main_threshold(strategy): tau, **sets, "mask_logit": rule}, config,
                                  args.batch_size)
           for rule in ("remove", "keep")}
    return {"n": len(examples), "differ": sum(a.ids != b.ids for a, b in zip(out["remove"], out["keep"])),
            "nfe_differ": sum(a.nfe != b.nfe for a, b in zip(out["remove"], out["keep"])),
            "acc_remove": accuracy(wb, tokenizer, task, examples, [r.ids for r in out["remove"]]),
            "acc_keep": accuracy(wb, tokenizer, task, examples, [r.ids for r in out["keep"]]),
            "mask_out": sum(model.mask_id in r.ids for r in out["keep"])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upstream", type=Path, help="checkout of github.com/czg1225/DMax")
    ap.add_argument("--model", default="oput", help="shipped model(s), comma-separated (base,mdlm,uniform,oput)")
    ap.add_argument("--tau-dec", default="0.95", help="tau_dec of spd/hard and tau of threshold, comma-separated")
    ap.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated subset of spd,hard,threshold")
    ap.add_argument("--samples", type=int, default=500, help="held-out examples of the model's task")
    ap.add_argument("--block-size", type=int, default=8)
    ap.add_argument("--gen-length", type=int, default=None, help="default: the task's response length")
    ap.add_argument("--batch-size", type=int, default=64, help="the workbench side's batch (workbench run's)")
    ap.add_argument("--cache", default="auto", help="the workbench side's --cache (auto: exact prefix cache)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="workbench strategy parameter added to / overriding the reference switches")
    ap.add_argument("--show", type=int, default=0, metavar="N", help="print the first N differing rows per cell")
    ap.add_argument("--dmax-arithmetic", action="store_true",
                    help="diagnosis: the workbench computes with DMax's float arithmetic, uncached (see "
                         "dmax_arithmetic)")
    ap.add_argument("--mask-logit-effect", action="store_true",
                    help="no DMax: the workbench with mask_logit=remove against keep, other parameters as given "
                         "(strategy defaults, plus --set)")
    args = ap.parse_args(argv)
    if args.mask_logit_effect:
        return main_mask_logit(args)
    if args.upstream is None:
        ap.error("--upstream DIR is required (a checkout of github.com/czg1225/DMax)")
    torch.set_num_threads(1)
    ps, utils = load_dmax(args.upstream)
    wb = workbench_api()
    if args.dmax_arithmetic:
        dmax_arithmetic()
        args.cache = "none"
    sets = recording.parse_sets(args.set)
    strategies = [s for s in args.strategies.split(",") if s]
    taus = [float(t) for t in args.tau_dec.split(",")]
    commit = recording.commit_of(args.upstream, strict=False)
    print(f"DMax {commit or '(commit unknown)'}; block {args.block_size}, {args.samples} samples, "
          f"workbench batch {args.batch_size}, cache {args.cache}"
          f"{', DMax arithmetic' if args.dmax_arithmetic else ''}")
    header = (f"{'model':8} {'strategy':9} {'tau':>5} {'rows':>9} {'ids':>9} {'NFE':>9} {'acc DMax':>9} "
              f"{'acc wb':>7} {'unf DMax':>8} {'unf wb':>6} {'stuck':>5}")
    print(header)
    for name in args.model.split(","):
        model, tokenizer = wb.load_model(wb.default_model_path(name))
        model.eval()
        task = wb.load_task(wb.DEFAULT_TASK)
        examples = task.eval_split(args.samples)
        for strategy in strategies:
            for tau in taus:
                c = run_cell(wb, ps, utils, model, tokenizer, task, examples, strategy, tau, args, sets)
                n = c["n"]
                print(f"{name:8} {strategy:9} {tau:5.2f} {c['rows']:4}/{n:<4} {c['ids']:4}/{n:<4} {c['nfe']:4}/{n:<4} "
                      f"{c['acc_ref']:8.1f}% {c['acc_wb']:6.1f}% {c['unfilled_ref']:8} {c['unfilled_wb']:6} "
                      f"{c['stuck']:5}", flush=True)
                for prompt, r, g in c["diffs"][:args.show]:
                    print(f"    {prompt!r}: DMax {r['ids']} nfe {r['nfe']} | workbench {g.ids} nfe {g.nfe}")
    return 0


def main_mask_logit(args) -> int:
    torch.set_num_threads(1)
    wb = workbench_api()
    sets = recording.parse_sets(args.set)
    print(f"workbench alone, mask_logit remove vs keep; other parameters: {sets or 'defaults'}; block "
          f"{args.block_size}, {args.samples} samples, batch {args.batch_size}, cache {args.cache}")
    print(f"{'model':8} {'strategy':9} {'tau':>5} {'ids differ':>10} {'NFE differ':>10} {'acc remove':>10} "
          f"{'acc keep':>8} {'MASK in output (keep)':>21}")
    for name in args.model.split(","):
        model, tokenizer = wb.load_model(wb.default_model_path(name))
        model.eval()
        task = wb.load_task(wb.DEFAULT_TASK)
        examples = task.eval_split(args.samples)
        for strategy in (s for s in args.strategies.split(",") if s):
            for tau in (float(t) for t in args.tau_dec.split(",")):
                c = mask_logit_effect(wb, model, tokenizer, task, examples, strategy, tau, args, sets)
                n = c["n"]
                print(f"{name:8} {strategy:9} {tau:5.2f} {c['differ']:5}/{n:<4} {c['nfe_differ']:5}/{n:<4} "
                      f"{c['acc_remove']:9.1f}% {c['acc_keep']:7.1f}% {c['mask_out']:21}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
