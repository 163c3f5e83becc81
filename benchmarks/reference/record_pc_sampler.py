"""Golden transcripts for `pc-sampler` from its authors' code (github.com/NEUIR/PC-Sampler).

    python benchmarks/reference/record_pc_sampler.py --upstream /work/refs/PC-Sampler

PC-Sampler (Huang et al., 2025, "PC-Sampler: Position-Aware Calibration of Decoding Bias in Masked Diffusion
Models", arXiv:2508.13021) is LLaDA's `generate` (fixed steps per block, `get_num_transfer_tokens`
schedule) whose top-k ranks the block's masked positions by `exp(-lambda * j) * min(-p * log f(x0), alpha)`:
j the position within the block, p the probability of the predicted token x0 and f(x0) its frequency in a
reference corpus. Recorded at commit 8b106b09877b2f69085db1b7bd7c1cc1e935d5a5 (`src/generate.py`,
`generate_with_pc_sampler`); nothing of it is copied here: the module is imported from the checkout and its
function makes every decision, its own `load_baseline` reads the corpus file.

Its loop takes a batch of one (`x = torch.full((1, ...))`), so each prompt runs alone and there is no
upstream `batch8`. Its softmax keeps the MASK logit (the workbench's `mask_logit=keep`).

Shims (none changes a decision): the model is `tiny.UpstreamView` (the workbench's native model answering
`model(x).logits`, hard ids, full attention). The corpus is a tiny frequency table over the tiny model's 48
ids in PC-Sampler's file format (`{"num_token": N, "p_baseline_dict": {id: count}}`), written by this
recorder to `tests/reference/pc-sampler/corpus/`; upstream keeps the table it loaded in a module global
(`BASE_LINE`), which the recorder clears before every case so each case loads its own file. Sampled cases
seed torch's global generator with `workbench.decoding.rng.sample_seed(seed, i)` before prompt i's run (upstream
draws LLaDA's Gumbel noise with `torch.rand_like`, float64, over the whole canvas every forward).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

import recording  # beside this script (its folder heads sys.path when it runs), as tiny is
import tiny
from recording import ROOT

from workbench.decoding.rng import sample_seed

UPSTREAM_REPO = "NEUIR/PC-Sampler"
UPSTREAM_PATH = "src/generate.py"
UPSTREAM_FUNCTION = "generate_with_pc_sampler"
HERE = ROOT / "tests" / "reference" / "pc-sampler"
OUT = HERE / "pc_sampler.json"
CORPUS = HERE / "corpus" / "tiny.json"  # a non-uniform reference corpus over the tiny vocabulary
UNIFORM = HERE / "corpus" / "uniform.json"  # no counts: every id gets 1 / num_token = 1 / V
SPEC = tiny.TinySpec(seed=1, init_std=1.0)
GEN_LENGTH = 16
SEED = 0  # DecodeConfig.seed of the sampled case

# name, steps (whole generation), block_length, lambd, alpha, corpus, temperature
CASES = (
    ("published", 16, 16, 0.25, 10.0, CORPUS, 0.0),     # the authors' setting: one block, a token per step
    ("blocks_clamped", 8, 8, 1.0, 1.0, CORPUS, 0.0),    # 2 blocks, 2 tokens a step, alpha clamps the scores
    ("uniform_corpus", 8, 16, 0.0, 10.0, UNIFORM, 0.0),  # lambda 0 (their Sudoku setting), no corpus
    ("sampled", 16, 16, 0.25, 10.0, CORPUS, 0.7),
)


def load_upstream(upstream: Path):
    """PC-Sampler's `src/generate.py`, imported from the checkout as a module of its own (it puts the checkout
    root on sys.path itself, for its `utils.load_json_or_jsonl`)."""
    return recording.load_module(upstream, UPSTREAM_PATH, "pc_sampler_generate", UPSTREAM_REPO)


def write_corpora(vocab: int) -> None:
    """The two corpus files, in PC-Sampler's format. Counts are uneven on purpose (EOS and a few ids common,
    as punctuation is in a real corpus; some ids absent, which upstream gives 1 / num_token)."""
    counts = {t: 1 + (t * 37) % 101 for t in range(vocab) if t % 7 != 3}
    counts[tiny.EOS] = 5000
    CORPUS.parent.mkdir(parents=True, exist_ok=True)
    CORPUS.write_text(json.dumps({"num_token": sum(counts.values()),
                                  "p_baseline_dict": {str(t): c for t, c in counts.items()}}, indent=0) + "\n")
    UNIFORM.write_text(json.dumps({"num_token": vocab, "p_baseline_dict": {}}) + "\n")


def run_case(upstream, view: tiny.UpstreamView, case: tuple, batch: list[list[int]]) -> dict:
    name, steps, block_length, lambd, alpha, corpus, temperature = case
    upstream.BASE_LINE = None  # load this case's corpus (upstream caches the first table it loads)
    rows = []
    for i, prompt in enumerate(batch):
        if temperature > 0:
            torch.manual_seed(sample_seed(SEED, i))  # the workbench's per-sample stream of sample i
        view.reset()
        out = upstream.generate_with_pc_sampler(view, torch.tensor([prompt]), steps=steps, gen_length=GEN_LENGTH,
                                                block_length=block_length, lambd=lambd, alpha=alpha,
                                                baseline_name=str(corpus), temperature=temperature,
                                                cfg_scale=0.0, remasking="low_confidence", mask_id=tiny.MASK)
        generated = out[0, len(prompt):].tolist()
        rows.append({"ids": tiny.cut_after_eos(generated),
                     "nfe": tiny.forwards_until_eos_block(view.log, 0, len(prompt), generated, block_length)})
    per_block = steps // (GEN_LENGTH // block_length)
    params = {"lambd": lambd, "alpha": alpha, "steps": per_block, "mask_logit": "keep"}
    if corpus != UNIFORM:  # the strategy's default is the uniform table
        params["baseline"] = str(corpus.relative_to(ROOT))
    decode = {"block_size": block_length, "max_new_tokens": GEN_LENGTH}
    if temperature > 0:
        # Upstream samples with LLaDA's Gumbel noise over the whole canvas; the strategy's own `temperature`
        # reproduces that draw, so the core's temperature stays 0 (it would draw from the same stream).
        params["temperature"] = temperature
        decode["seed"] = SEED
    return {"name": name,
            "upstream_settings": {"steps": steps, "gen_length": GEN_LENGTH, "block_length": block_length,
                                  "lambd": lambd, "alpha": alpha, "baseline_name": str(corpus.relative_to(ROOT)),
                                  "temperature": temperature, "cfg_scale": 0.0, "remasking": "low_confidence",
                                  "mask_id": tiny.MASK},
            "workbench": {"params": params, "decode": decode},
            "prompts": batch, "batch1": rows}


def main() -> None:
    parser = recording.arguments(__doc__, "checkout of github.com/NEUIR/PC-Sampler", OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    upstream = load_upstream(args.upstream)
    model = tiny.build(SPEC)
    view = tiny.UpstreamView(model)
    write_corpora(SPEC.vocab_size)
    batch = recording.prompts(SPEC.vocab_size)
    cases = [run_case(upstream, view, case, batch) for case in CASES]
    source = recording.source(UPSTREAM_REPO, recording.commit_of(args.upstream), UPSTREAM_PATH, UPSTREAM_FUNCTION)
    transcript = recording.transcript("pc-sampler", source, __file__, cases, model=tiny.described(SPEC, model))
    recording.write(args.out, transcript, compact=False)
    for case in cases:
        nfe = [r["nfe"] for r in case["batch1"]]
        masks = sum(r["ids"].count(tiny.MASK) for r in case["batch1"])
        print(f"{case['name']}: nfe {nfe}, ids {[len(r['ids']) for r in case['batch1']]}, MASK left {masks}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
