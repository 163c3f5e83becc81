"""Fast-dLLM's LLaDA `generate` (no cache, prefix cache, dual cache) against the workbench's `threshold`.

    git clone https://github.com/NVlabs/Fast-dLLM ../Fast-dLLM
    python benchmarks/reference/fastdllm_parity.py --upstream ../Fast-dLLM

`--upstream` is a checkout of Fast-dLLM (written against commit 24cc59e7). Nothing of it is
copied here: its `llada/generate.py` (`generate`, `generate_with_prefix_cache`, `generate_with_dual_cache`)
and `llada/model/modeling_llada.py` are imported from the checkout and run as published.

The model is a tiny random LLaDA folder (`tests/llada_like.py`'s `write_llada`: LLaDA's config fields and
tensor names, random weights of a trained model's scale) written to a temporary folder. Fast-dLLM decodes it
with its own `LLaDAModelLM` (the folder's config, the folder's `model.safetensors`, strict load); the workbench
loads the same folder as `workbench run --model FOLDER --trust-remote-code` does (LLaDA weights mapped onto
the native model, which has the prefix and dual caches) and decodes with `threshold`, `margin=0` (Fast-dLLM's
rule: the most confident mask and every mask >= tau), `--cache none|prefix|dual` for `generate`,
`generate_with_prefix_cache`, `generate_with_dual_cache`. Each prompt is decoded alone and all prompts in one
left-padded batch on the workbench side (Fast-dLLM's functions take one prompt).

Shims, none changing a decision: transformers 5 drops `use_cache` from a config's attributes, and Fast-dLLM's
forward reads `self.config.use_cache`, so it is set on the config after construction; its configuration
module registers its config class for model type "llada" in transformers for the whole process, which is
withdrawn so that the workbench loads the folder through the folder's own files; the model's forward is
wrapped to log each call's input (to count forwards per block and to find the block each forward decodes)
and to stop a decode that never ends (`Stuck`). The tiny model's MASK output row is zeroed (`silence_mask`):
a trained LLaDA never predicts MASK, a random one does, and then Fast-dLLM's loop, which has no cap, writes
MASK back for ever.

Conventions compared: ids are cut after the first EOS and forwards counted up to the end of the block holding
it (the workbench stops a row there; Fast-dLLM decodes every block). Fast-dLLM's cached loops (this version)
forward once more after a block's first, full forward completed the block; the workbench does not
(`docs/algorithms.md`, "Counting forwards"), so in cached modes `NFE` compares the workbench's `nfe` with
Fast-dLLM's count less those forwards (`wasted`, printed). MASK is a token of the model's vocabulary: when
Fast-dLLM's most confident prediction is MASK it writes MASK back (no progress that forward); the workbench
removes the MASK logit by default and never promotes a MASK top with `mask_logit=keep`, the default here (it
keeps MASK in the softmax, as Fast-dLLM does). `stalled` counts the reference forwards that made no progress
(a MASK top) and `stuck` the decodes stopped after `STUCK_FORWARDS`.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import random
import sys
import tempfile
import types
from pathlib import Path

import torch

import recording  # beside this script

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = {"none": "generate", "prefix": "generate_with_prefix_cache", "dual": "generate_with_dual_cache"}


def load_fastdllm(upstream: Path):
    """(generate module, modelling module) from the checkout's `llada/` folder."""
    sys.path.insert(0, str(upstream / "llada"))  # generate.py imports `model.modeling_llada`
    gen = recording.load_module(upstream, "llada/generate.py", "fastdllm_generate", "NVlabs/Fast-dLLM")
    modelling, configuration = importlib.import_module("model.modeling_llada"), importlib.import_module(
        "model.configuration_llada")
    # Its configuration module registers its LLaDAConfig for model type "llada" in transformers' AutoConfig, for
    # the whole process; withdrawn, so the workbench loads the folder with the folder's own files, as in a run.
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    CONFIG_MAPPING._extra_content.pop("llada", None)
    return gen, modelling, configuration


class Stuck(RuntimeError):
    """A reference decode that forwarded `STUCK_FORWARDS` times: its loop has no cap, and a block whose most
    confident prediction is MASK never changes (the same input gives the same MASK again), so it never ends."""


STUCK_FORWARDS = 200


class LoggedModel:
    """Fast-dLLM's model with every call's input ids logged (`.device` as `generate` reads it); raises `Stuck`
    past `STUCK_FORWARDS` calls since the last `reset`."""

    def __init__(self, model):
        self.model, self.log = model, []
        self.device = next(model.parameters()).device

    def reset(self) -> None:
        self.log = []

    def __call__(self, ids, **kwargs):
        if len(self.log) >= STUCK_FORWARDS:
            raise Stuck(f"{STUCK_FORWARDS} forwards")
        self.log.append(ids.detach().clone())
        return self.model(ids, **kwargs)


@dataclasses.dataclass
class ReferenceRow:
    """One prompt decoded by Fast-dLLM: ids cut after EOS (None: `Stuck`), forwards up to the EOS block, of
    which `wasted` ran on a block already complete and `stalled` repeated the previous input (no progress)."""

    ids: list[int] | None
    forwards: int = 0
    wasted: int = 0
    stalled: int = 0

    @property
    def comparable_nfe(self) -> int:
        """The count the workbench's `nfe` should equal: without the forwards on completed blocks."""
        return self.forwards - self.wasted


def reference_model(modelling, configuration, folder: Path, dtype):
    """Fast-dLLM's `LLaDAModelLM` from the folder's config and weights (strict)."""
    from safetensors.torch import load_file

    raw = json.loads((folder / "config.json").read_text())
    raw.pop("auto_map", None)
    config = configuration.LLaDAConfig(**raw)
    config.use_cache = False  # transformers 5 drops it; Fast-dLLM's forward reads it (see the docstring)
    model = modelling.LLaDAModelLM(config)
    model.load_state_dict(load_file(folder / "model.safetensors"), strict=True)
    return model.to(dtype).eval()


def count_forwards(log, prompt_len: int, total: int, block: int, mask_id: int, last_block: int) -> tuple[int, int, int]:
    """(forwards, wasted, stalled) up to the end of block `last_block` (0-based among generated blocks).

    A full-length forward decodes the leftmost generated block that holds a MASK (it starts a block in the
    cached loops); every shorter one belongs to the block of the full forward before it. A shorter forward
    whose first `block` positions hold no MASK is `wasted` (the block was already complete)."""
    forwards = wasted = stalled = 0
    current, previous = 0, None
    for ids in log:
        row = ids[0]
        if row.shape[0] == total:
            gen = row[prompt_len:].tolist()
            masked = [b for b in range(0, len(gen), block) if mask_id in gen[b:b + block]]
            current = masked[0] // block if masked else (len(gen) - 1) // block
            part = row[prompt_len + current * block:prompt_len + (current + 1) * block]
        else:
            part = row[:block]
        if current <= last_block:
            forwards += 1
            wasted += row.shape[0] != total and mask_id not in part.tolist()
            stalled += previous is not None and torch.equal(previous, row)  # the forward before promoted nothing
        previous = row
    return forwards, wasted, stalled


def decode_reference(gen, model: LoggedModel, prompt: list[int], cache: str, tau: float, args, mask_id: int,
                     eos_id: int) -> ReferenceRow:
    model.reset()
    g, block = args.gen_length, args.block_size
    try:
        x, _ = getattr(gen, FUNCTIONS[cache])(model, torch.tensor([prompt]), steps=g, gen_length=g,
                                              block_length=block, temperature=0.0, remasking="low_confidence",
                                              mask_id=mask_id, threshold=tau)
    except Stuck:
        return ReferenceRow(ids=None)
    ids = x[0, len(prompt):].tolist()
    ids = ids[:ids.index(eos_id) + 1] if eos_id in ids else ids
    counted = count_forwards(model.log, len(prompt), len(prompt) + g, block, mask_id, (len(ids) - 1) // block)
    return ReferenceRow(ids, *counted)


def silence_mask(folder: Path, mask_id: int) -> None:
    """Zero the output row of MASK in the folder's weights. A trained LLaDA never predicts MASK; a random one
    does, and then Fast-dLLM's loop (no cap) writes MASK back for ever. With the row at 0 the MASK logit is 0,
    below the largest of the other random logits in practice; it stays in the softmax on both sides."""
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    state = load_file(path)
    state["model.transformer.ff_out.weight"][mask_id] = 0.0
    save_file(state, path, metadata={"format": "pt"})


def workbench_api():
    """The workbench functions this script uses (one place to follow a package move)."""
    from workbench import DecodeConfig, generate, make_manager
    from workbench.models.loading import load_model

    return types.SimpleNamespace(generate=generate, make_manager=make_manager, DecodeConfig=DecodeConfig,
                                 load_model=load_model)


def print_cell(label: str, prompts, ref: list[ReferenceRow], alone, together, show: int) -> None:
    n = len(prompts)
    same_ids = [r.ids == a.ids for r, a in zip(ref, alone)]
    same_nfe = [r.comparable_nfe == a.nfe for r, a in zip(ref, alone)]
    rows1 = sum(a and b for a, b in zip(same_ids, same_nfe))
    rows8 = sum(r.ids == t.ids and r.comparable_nfe == t.nfe for r, t in zip(ref, together))
    print(f"{label} {rows1:3}/{n:<4} {rows8:3}/{n:<4} {sum(same_ids):3}/{n:<3} {sum(same_nfe):3}/{n:<3} "
          f"{sum(r.wasted for r in ref):6} {sum(r.stalled for r in ref):8} {sum(r.ids is None for r in ref):5}",
          flush=True)
    differing = [(p, r, a) for p, r, a, i, f in zip(prompts, ref, alone, same_ids, same_nfe) if not (i and f)]
    for p, r, a in differing[:show]:
        print(f"    {p}: Fast-dLLM {r.ids} nfe {r.forwards} (wasted {r.wasted}) | workbench {a.ids} nfe {a.nfe}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upstream", type=Path, required=True, help="checkout of github.com/NVlabs/Fast-dLLM")
    ap.add_argument("--cache", default="none,prefix,dual", help="comma-separated subset of none,prefix,dual")
    ap.add_argument("--tau", default="0.9,0.5,0",
                    help="thresholds, comma-separated (Fast-dLLM's default 0.9; 0 ends every block in one forward)")
    ap.add_argument("--dtype", default="float32,float64", help="comma-separated")
    ap.add_argument("--kv-heads", type=int, default=None, help="grouped-query attention (n_kv_heads)")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--gen-length", type=int, default=32)
    ap.add_argument("--block-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0, help="weights and prompts")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="workbench threshold parameter (defaults margin=0 mask_logit=keep)")
    ap.add_argument("--show", type=int, default=0, metavar="N", help="print the first N differing rows per cell")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT / "tests"))
    from llada_like import BOS, EOS, MASK, write_llada

    gen, modelling, configuration = load_fastdllm(args.upstream)
    wb = workbench_api()
    commit = recording.commit_of(args.upstream, strict=False)
    rng = random.Random(args.seed)
    prompts = [[BOS] + [rng.randrange(5, 40) for _ in range(rng.randint(1, 8))] for _ in range(args.prompts)]
    sets = {"margin": 0.0, "mask_logit": "keep", **recording.parse_sets(args.set)}
    print(f"Fast-dLLM {commit or '(commit unknown)'}; {args.prompts} prompts, gen {args.gen_length}, block "
          f"{args.block_size}, n_kv_heads {args.kv_heads}, workbench threshold {sets}")
    print(f"{'dtype':8} {'cache':6} {'tau':>4} {'rows b1':>8} {'rows b8':>8} {'ids':>7} {'NFE':>7} {'wasted':>6} "
          f"{'stalled':>8} {'stuck':>5}")
    with tempfile.TemporaryDirectory() as tmp:
        extra = {} if args.kv_heads is None else {"n_kv_heads": args.kv_heads}
        folder = write_llada(Path(tmp) / "llada-tiny", seed=args.seed, **extra)
        silence_mask(folder, MASK)
        for dtype_name in args.dtype.split(","):
            dtype = getattr(torch, dtype_name)
            ref_model = LoggedModel(reference_model(modelling, configuration, folder, dtype))
            model, _ = wb.load_model(folder, trust_remote_code=True, dtype=dtype)
            for cache in args.cache.split(","):
                for tau in (float(t) for t in args.tau.split(",")):
                    label = f"{dtype_name:8} {cache:6} {tau:4.2f}"
                    ref = [decode_reference(gen, ref_model, p, cache, tau, args, MASK, EOS) for p in prompts]
                    config = wb.DecodeConfig(block_size=args.block_size, max_new_tokens=args.gen_length, cache=cache)
                    manager = wb.make_manager("threshold", params={"tau": tau, **sets})
                    try:
                        alone = [wb.generate(model, [p], manager, config, sample_ids=[i])[0]
                                 for i, p in enumerate(prompts)]
                        together = wb.generate(model, prompts, manager, config, sample_ids=list(range(len(prompts))))
                    except ValueError as err:  # a refused cache mode (remote code) is a result here
                        print(f"{label} workbench refused: {err}")
                        continue
                    print_cell(label, prompts, ref, alone, together, args.show)
    return 0


if __name__ == "__main__":
    sys.exit(main())
