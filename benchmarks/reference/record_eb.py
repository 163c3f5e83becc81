"""Golden transcripts for `eb` (EB-Sampler) from the public EB-Sampler of the PC-Sampler repository.

    python benchmarks/reference/record_eb.py --upstream /work/refs/PC-Sampler

No code by the EB-Sampler's authors (Ben-Hamu, Gat, Severo, Nolte, Karrer, 2025, arXiv:2505.24857) is public:
the paper names no repository, and searching code, issues and pages for it found only third-party
re-implementations. The one recorded here is the baseline the PC-Sampler paper compares against,
`generate_with_eb_sampler` in `src/generate.py` of github.com/NEUIR/PC-Sampler (recorded at commit
8b106b09877b2f69085db1b7bd7c1cc1e935d5a5): LLaDA's loop with the paper's rule, entropy as the error proxy,
`k = #{sum_{j<=i} H_(j) - max_{j<=i} H_(j) <= gamma}` over the masked positions sorted by entropy, at least
one. So these transcripts pin the workbench to the field's public EB-Sampler; the rule itself is also tested
against steps computed by hand from the paper (`tests/strategies/test_eb.py`).

Nothing of it is copied here: the module is imported from the checkout and its function makes every decision.
Its loop has no blocks (one canvas of `gen_length` positions, decoded until no MASK is left) and takes a
batch of one, so each prompt runs alone and there is no upstream `batch8`; the workbench replays it with one
block of `gen_length` (`block_size = max_new_tokens`). Its softmax keeps the MASK logit (the workbench's
`mask_logit=keep`).

Shims (none changes a decision): the model is `tiny.UpstreamView` (the workbench's native model answering
`model(x).logits`, hard ids, full attention), with a forward guard: upstream loops while any MASK is left, so
a canvas whose selected positions all predict MASK would never end; the guard stops it after
`STUCK_FORWARDS` forwards and the recorder refuses such a case (at init_std 1.5 that happens at seeds 0, 2, 5
and 7 of 0-8: MASK-argmax traps are common on a model whose MASK logit can win; the workbench's forward cap
ends such a block). The transcript raises the workbench's cap to the guard, since
upstream has none. Sampled cases seed torch's global generator with `workbench.decoding.rng.sample_seed(seed,
i)` before prompt i's run (upstream draws its Gumbel noise with `torch.rand_like`, float64, over the whole
canvas every forward).
"""

from __future__ import annotations

from pathlib import Path

import torch

import recording  # beside this script (its folder heads sys.path when it runs), as tiny is
import tiny
from recording import ROOT

from workbench.decoding.rng import sample_seed

UPSTREAM_REPO = "NEUIR/PC-Sampler"
UPSTREAM_PATH = "src/generate.py"
UPSTREAM_FUNCTION = "generate_with_eb_sampler"
OUT = ROOT / "tests" / "reference" / "eb" / "pc_sampler_baseline.json"
# Peaked enough that several positions are near-certain at once, and a seed where the MASK logit matters (the
# cases differ under mask_logit=remove) and no canvas gets stuck (seeds 0, 2, 5, 7 do: see the docstring).
SPEC = tiny.TinySpec(seed=3, init_std=1.5)
GEN_LENGTH = 16
SEED = 0  # DecodeConfig.seed of the sampled case
STUCK_FORWARDS = 4 * GEN_LENGTH  # see the docstring: upstream has no cap

# (name, gamma, temperature): the PC-Sampler scripts' gamma 0.01, a looser budget, and a sampled run.
CASES = (("gamma0.01", 0.01, 0.0), ("gamma0.5", 0.5, 0.0), ("gamma0.1_sampled", 0.1, 0.7))


def load_upstream(upstream: Path):
    """PC-Sampler's `src/generate.py`, imported from the checkout as a module of its own."""
    return recording.load_module(upstream, UPSTREAM_PATH, "pc_sampler_generate", UPSTREAM_REPO)


class Guarded(tiny.UpstreamView):
    """`UpstreamView` that refuses to forward more than `limit` times (upstream's loop has no cap)."""

    limit = STUCK_FORWARDS

    def __call__(self, input_ids, attention_mask=None, *args, **kwargs):
        if self.calls >= self.limit:
            raise RuntimeError(f"upstream still has MASK after {self.limit} forwards (stuck on MASK argmaxes)")
        return super().__call__(input_ids, attention_mask, *args, **kwargs)


def run_case(upstream, view: Guarded, name: str, gamma: float, temperature: float, batch: list[list[int]]) -> dict:
    rows = []
    for i, prompt in enumerate(batch):
        if temperature > 0:
            torch.manual_seed(sample_seed(SEED, i))  # the workbench's per-sample stream of sample i
        view.reset()
        x = torch.tensor([prompt])
        out = upstream.generate_with_eb_sampler(view, x, gamma=gamma, gen_length=GEN_LENGTH,
                                                temperature=temperature, cfg_scale=0.0, mask_id=tiny.MASK)
        generated = out[0, len(prompt):].tolist()
        if tiny.MASK in generated:
            raise RuntimeError(f"{name} row {i}: upstream left a MASK: {generated}")
        rows.append({"ids": tiny.cut_after_eos(generated),
                     "nfe": tiny.forwards_until_eos_block(view.log, 0, len(prompt), generated, GEN_LENGTH)})
    # Upstream has no forward cap (MASK predictions can make a canvas take more than G forwards): the
    # workbench's cap is raised to the recorder's guard, so only upstream's own stop ends a block.
    decode = {"block_size": GEN_LENGTH, "max_new_tokens": GEN_LENGTH, "max_forwards_per_block": STUCK_FORWARDS}
    params = {"gamma": gamma, "proxy": "entropy", "mask_logit": "keep"}
    if temperature > 0:
        # Upstream samples with LLaDA's Gumbel noise over the whole canvas; the strategy's own `temperature`
        # reproduces that draw, so the core's temperature stays 0 (it would draw from the same stream).
        params["temperature"] = temperature
        decode["seed"] = SEED
    return {"name": name,
            "upstream_settings": {"gamma": gamma, "gen_length": GEN_LENGTH, "temperature": temperature,
                                  "cfg_scale": 0.0, "mask_id": tiny.MASK},
            "workbench": {"params": params, "decode": decode},
            "prompts": batch, "batch1": rows}


def main() -> None:
    parser = recording.arguments(__doc__, "checkout of github.com/NEUIR/PC-Sampler", OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    upstream = load_upstream(args.upstream)
    model = tiny.build(SPEC)
    view = Guarded(model)
    batch = recording.prompts(SPEC.vocab_size)
    cases = [run_case(upstream, view, *case, batch) for case in CASES]
    source = recording.source(UPSTREAM_REPO, recording.commit_of(args.upstream), UPSTREAM_PATH, UPSTREAM_FUNCTION,
                              note="third-party: the EB-Sampler authors published no code; this is PC-Sampler's "
                                   "baseline implementation of their rule")
    transcript = recording.transcript("eb", source, __file__, cases, model=tiny.described(SPEC, model))
    recording.write(args.out, transcript, compact=False)
    for case in cases:
        nfe = [r["nfe"] for r in case["batch1"]]
        tokens = [len(r["ids"]) for r in case["batch1"]]
        print(f"{case['name']}: nfe {nfe}, ids {tokens}")
    print(f"wrote {recording.shown(args.out)}")


if __name__ == "__main__":
    main()
