"""Golden transcripts for `dream`: Dream's own sampler, `DreamGenerationMixin.diffusion_generate`.

    python benchmarks/reference/record_dream.py --upstream /work/refs/Fast-dLLM

Dream's sampler ships inside its Hugging Face model folder (`generation_utils.py` beside `modeling_dream.py`),
not in github.com/DreamLM/Dream; NVlabs/Fast-dLLM keeps a copy under `dream/model/`, recorded here at commit
24cc59e75f20a6384bae8c905965bb090b96388e (the file last changed in a41dc54, "open source", June 2025). Its
`origin`, `maskgit_plus`, `topk_margin` and `entropy` branches read as the model folder's file does (the copy
adds the `confidence_threshold` branch, a `while` loop for it, and two prints). Nothing of it is copied here:
the file is imported from the checkout as a module of its own and `diffusion_generate` makes every decision.

What each transcript covers (`tests/reference/dream/`), one block of 16 generated positions (Dream has no
blocks), the same 8 prompts (lengths 2-9, ids 4..47):

- `greedy.json`: `maskgit_plus` at 2 tokens per step, `topk_margin` with top_k 8 and eps 0.01 on an uneven
  schedule (5 steps), `entropy` with top_p 0.9 at one token per step; each with the authors' own left-padded
  batch (`batch8`).
- `sampled.json`: `origin` (random transfer order, temperature 0.7, top_k 20), `maskgit_plus` with
  temperature 0.5, top_p 0.95 and alg_temp 0.5 (sampled tokens and sampled positions), and the README's own
  call (`entropy`, temperature 0.2, top_p 0.95, alg_temp 0); prompt i seeded with `sample_seed(0, i)` (the
  workbench's per-sample streams), and the authors' batched run seeded once (it draws for the whole batch
  from one stream, so its rows are listed as divergences).
- `bf16.json`: the greedy cases on the same model in bfloat16, the dtype Dream's released checkpoints run in;
  Dream's temperature, filters, softmax and confidences then run in bfloat16 (`precision=model`).
- `published_folder/dream_like.json` (replayed by `tests/test_dream_checkpoints.py`, not by the transcript
  helper): no tiny model; a folder in Dream's published layout (`tests/dream_like.py`, seed 0) loaded by the
  workbench's own loader, its remote `DreamModel` driven by the mixin through `FolderView` (Dream's call
  `self(x, attention_mask, tok_idx)` passed on as input ids, mask, position ids). Its weights' checksum is stored.

Shims (none changes a decision of `diffusion_generate`):
- the model: `DreamHost`, a subclass of the checkout's `DreamGenerationMixin` whose forward is
  `tiny.UpstreamView(model, shift=True)` (Dream's shifted-logit convention: the mixin's
  `cat([logits[:, :1], logits[:, :-1]])` recovers the logits the workbench reads). Dream calls
  `self(x, attention_mask, tok_idx)` with `attention_mask="full"` when nothing is padded; the host passes
  None then, and the 4-D mask of a padded batch otherwise (the view skips left padding in its positions, as
  Dream's `tok_idx` does);
- the generation config: a `DreamGenerationConfig` built with every setting (Dream's `from_model_config`
  path, which injects transformers 4's legacy `top_k=50` / `temperature=1.0`, is not taken), subclassed so
  that `validate` accepts the `user_set_attributes` argument transformers 5's `update` passes (Dream's
  `validate` is a no-op `pass` that takes only `is_init`; under transformers 4.46 the shim is inert);
- stdout: the copy's `print` of steps and time is swallowed.
- nothing calls `.cuda()`: the mixin runs on the model's device (the CPU here).
- forward counts: Dream always runs all `steps` forwards; `nfe` is that count (one block). In `origin` a row
  can have no mask left before the last step; Dream forwards it anyway, the workbench ends the block. Those
  rows are found from Dream's own inputs and listed under `divergences`.
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

import recording  # beside this script (its folder heads sys.path when it runs), as tiny is
import tiny
from recording import ROOT

from workbench.decoding.rng import sample_seed

UPSTREAM_REPO = "NVlabs/Fast-dLLM"
UPSTREAM_PATH = "dream/model/generation_utils.py"
UPSTREAM_FUNCTION = "DreamGenerationMixin.diffusion_generate"
OUT = ROOT / "tests" / "reference" / "dream"
GEN = 16  # generated positions: one Dream canvas = one workbench block
SEED = 0  # DecodeConfig.seed of the sampled cases

# Dream's sampling settings of each case (everything else at DreamGenerationConfig's defaults: temperature 0,
# top_p / top_k None, eps 1e-3, alg_temp None). The workbench parameters are the same names.
GREEDY = [
    ("maskgit_plus", dict(alg="maskgit_plus", steps=8)),
    ("topk_margin", dict(alg="topk_margin", steps=5, top_k=8, eps=0.01)),
    ("entropy", dict(alg="entropy", steps=16, top_p=0.9)),
]
SAMPLED = [
    ("origin", dict(alg="origin", steps=8, temperature=0.7, top_k=20)),
    ("alg_temp", dict(alg="maskgit_plus", steps=8, temperature=0.5, top_p=0.95, alg_temp=0.5)),
    ("readme", dict(alg="entropy", steps=8, temperature=0.2, top_p=0.95, alg_temp=0.0)),
]
DEFAULTS = dict(temperature=0.0, top_p=None, top_k=None, eps=1e-3, alg_temp=None)
# The published-folder transcript (record_folder): tests/dream_like.py's weights seed, and (name, settings, sampled).
FOLDER_SEED = 0
FOLDER_CASES = [
    ("maskgit_plus", dict(alg="maskgit_plus", steps=8), False),
    ("entropy", dict(alg="entropy", steps=16, top_p=0.9), False),
    ("origin", dict(alg="origin", steps=8, temperature=0.7, top_k=20), True),
]


def load_upstream(upstream: Path):
    """The checkout's `generation_utils.py`, imported as a module of its own (it imports only torch and
    transformers' GenerationConfig / ModelOutput)."""
    return recording.load_module(upstream, UPSTREAM_PATH, "dream_generation_utils", UPSTREAM_REPO)


def host_class(up):
    """`DreamHost`: the checkout's mixin driving the tiny model (see the module docstring)."""

    class Config(up.DreamGenerationConfig):
        def validate(self, *args, **kwargs):  # Dream's is a no-op taking only is_init (transformers 5 passes more)
            pass

    class DreamHost(up.DreamGenerationMixin):
        def __init__(self, view):
            self.view = view
            self.device = view.device
            self.config = view.config
            self.ids = {k: getattr(view.config, k) for k in ("mask_token_id", "pad_token_id", "eos_token_id")}
            # Read only for special ids the passed config leaves None (Dream's fallback): here only bos, unused.
            self.generation_config = SimpleNamespace(bos_token_id=None, **self.ids)

        def __call__(self, x, attention_mask=None, tok_idx=None):
            padded = attention_mask if isinstance(attention_mask, torch.Tensor) else None  # "full": no padding
            return self.view(x, attention_mask=padded, position_ids=tok_idx)

        def generate(self, x: torch.Tensor, settings: dict, attention_mask=None) -> torch.Tensor:
            config = Config(**{**DEFAULTS, **settings}, max_new_tokens=GEN, bos_token_id=None, **self.ids)
            with contextlib.redirect_stdout(io.StringIO()):  # the copy prints steps and seconds
                return self.diffusion_generate(x, generation_config=config, attention_mask=attention_mask)

    return DreamHost


def open_forwards(log: list[torch.Tensor], row: int, prompt_len: int) -> int:
    """Forwards whose input still held a MASK among the row's generated positions: the forwards the
    workbench spends (it ends a block when no position is open; Dream runs all `steps`)."""
    return sum(bool((ids[row, prompt_len:] == tiny.MASK).any()) for ids in log)


def run_upstream(host, prompts: list[list[int]], settings: dict, seeds: list[int] | None, batched_seed):
    """batch-1 rows {ids cut after EOS, nfe} with the forwards that had a mask left, the left-padded batched
    run's ids per row, and whether its rows ever held different numbers of masks (see BATCH_MEAN)."""
    view = host.view
    rows, live = [], []
    for i, prompt in enumerate(prompts):
        if seeds is not None:
            torch.manual_seed(seeds[i])
        view.reset()
        out = host.generate(torch.tensor([prompt]), settings)
        generated = out[0, len(prompt):].tolist()
        assert view.calls == settings["steps"], (view.calls, settings)
        nfe = tiny.forwards_until_eos_block(view.log, 0, len(prompt), generated, GEN)
        assert nfe == settings["steps"]  # one canvas: every forward belongs to it
        rows.append({"ids": tiny.cut_after_eos(generated), "nfe": nfe})
        live.append(open_forwards(view.log, 0, len(prompt)))
    width, x, mask = recording.left_padded(prompts, tiny.PAD)
    if batched_seed is not None:
        torch.manual_seed(batched_seed)
    view.reset()
    out = host.generate(x, settings, attention_mask=mask)
    batch8 = [tiny.cut_after_eos(out[i, width:].tolist()) for i in range(len(prompts))]
    counts = [(ids[:, width:] == tiny.MASK).sum(1) for ids in view.log]  # masks per row at each forward
    uneven = any(bool((c != c[0]).any()) for c in counts)  # then the batch mean is not every row's own count
    return rows, live, batch8, uneven


EARLY = ("Dream forwards all `steps` even after its canvas holds no mask (here `origin` transferred every "
         "position before the last step); the workbench ends the block at the first step with no open position, "
         "so its nfe is lower and its tokens the same")
STREAM = ("Dream's batched run draws from one global stream for the whole batch (and ranks its rows' masks "
          "together), so a row's draws depend on the batch; per-sample streams match the batch-1 runs")
TIES = ("in the padded batch Dream ranks the row's confidences in a longer row (left padding), computed by a forward "
        "whose rounding differs from the row's alone; torch.topk then orders tied or near-tied confidences differently")
BATCH_MEAN = ("Dream transfers int(mean mask count of the batch * (1 - s/t)) positions in every row; once a row "
              "kept a mask (its argmax was MASK, 'transferred' and still masked) the mean is no row's own count, "
              "so every row transfers another number than alone, and a row with fewer masks than that number "
              "has decoded positions overwritten with MASK")


def divergences(rows, live, batch8, uneven: bool, *, steps: int, sampled: bool) -> list:
    """Every row the workbench cannot match, by mode, with its cause (check_case requires them to differ)."""
    found: dict[tuple[int, str], list[str]] = {}
    for i, (row, ids) in enumerate(zip(rows, batch8)):
        if live[i] < steps:
            found.setdefault((i, "any"), []).append(EARLY)
        if ids != row["ids"]:
            cause = STREAM if sampled else (BATCH_MEAN if uneven else TIES)
            found.setdefault((i, "upstream-batch8"), []).append(cause)
    return [{"row": i, "mode": mode, "cause": "; ".join(causes)} for (i, mode), causes in sorted(found.items())]


def record(up, commit: str, cases, note: str, sampled: bool, dtype: str = "float32") -> dict:
    """One transcript: each case run by Dream alone per prompt and as one left-padded batch."""
    spec = tiny.TinySpec(seed=0, init_std=0.5, dtype=dtype)
    model = tiny.build(spec)
    host = host_class(up)(tiny.UpstreamView(model, shift=True))
    prompts = recording.prompts(spec.vocab_size)
    out = []
    for name, settings in cases:
        seeds = [sample_seed(SEED, i) for i in range(len(prompts))] if sampled else None
        rows, live, batch8, uneven = run_upstream(host, prompts, settings, seeds, SEED if sampled else None)
        decode = {"block_size": GEN, "max_new_tokens": GEN}
        if sampled:
            decode.update(rng="sample", seed=SEED)
        params = {**settings, "mask_logit": "keep"}  # Dream's softmax keeps the MASK logit
        if dtype != "float32":
            params["precision"] = "model"  # Dream samples in the logits' own dtype
        case = {"name": name, "upstream_settings": {**DEFAULTS, **settings, "max_new_tokens": GEN,
                                                    "mask_token_id": tiny.MASK},
                "workbench": {"params": params, "decode": decode}, "prompts": prompts, "batch1": rows,
                "batch8": batch8}
        found = divergences(rows, live, batch8, uneven, steps=settings["steps"], sampled=sampled)
        if found:
            case["divergences"] = found
        out.append(case)
    upstream = recording.source(UPSTREAM_REPO, commit, UPSTREAM_PATH, UPSTREAM_FUNCTION)
    return recording.transcript("dream", upstream, __file__, out, note=note, model=tiny.described(spec, model))


def record_greedy(up, commit: str) -> dict:
    return record(up, commit, GREEDY, "greedy confidence-ordered algorithms (maskgit_plus, topk_margin, entropy) "
                  "with top_k / top_p filtering and uneven schedules", sampled=False)


def record_sampled(up, commit: str) -> dict:
    return record(up, commit, SAMPLED, "origin (random transfer order), sampled tokens, sampled positions (alg_temp) "
                  "and the README's call, prompt i seeded with sample_seed(0, i)", sampled=True)


def record_bf16(up, commit: str) -> dict:
    return record(up, commit, GREEDY, "the greedy cases on the same model in bfloat16, the dtype Dream's checkpoints "
                  "run in: Dream's softmax, filters and confidences stay in the logits' dtype (precision=model)",
                  sampled=False, dtype="bfloat16")


class FolderView:
    """A loaded Dream folder's own model called as Dream's sampler calls it: input ids, the 4-D mask (None when
    nothing is padded), Dream's `tok_idx` as position ids; counts and logs the forwards like `UpstreamView`."""

    def __init__(self, model):
        self.model, self.config, self.device = model, model.config, model.device
        self.calls, self.log = 0, []

    def __call__(self, input_ids, attention_mask=None, position_ids=None):
        self.calls += 1
        self.log.append(input_ids.clone())
        with torch.no_grad():
            return self.model(input_ids, attention_mask, position_ids)

    def reset(self) -> None:
        self.calls, self.log = 0, []


def record_folder(up, commit: str) -> dict:
    """`published_folder/dream_like.json`: the mixin driving the model of a folder laid out as Dream publishes
    it (`tests/dream_like.py`), loaded by the workbench's own loader; no tiny model involved."""
    import tempfile

    sys.path.insert(0, str(ROOT / "tests"))
    import dream_like
    from workbench.models.adapters import load_adapter

    prompts = recording.prompts(dream_like.VOCAB, first=len(dream_like.SPECIALS))
    eos, cases = dream_like.EOS, []
    with tempfile.TemporaryDirectory() as tmp:
        folder = dream_like.write_dream(Path(tmp) / "dream", seed=FOLDER_SEED)
        view = FolderView(load_adapter(folder, trust_remote_code=True)[0].model)
        host = host_class(up)(view)
        for name, settings, sampled in FOLDER_CASES:
            rows, early = [], []
            for i, prompt in enumerate(prompts):
                if sampled:
                    torch.manual_seed(sample_seed(SEED, i))
                view.reset()
                out = host.generate(torch.tensor([prompt]), settings)[0, len(prompt):].tolist()
                rows.append({"ids": out[:out.index(eos) + 1] if eos in out else out, "nfe": view.calls})
                live = sum(bool((ids[0, len(prompt):] == dream_like.MASK).any()) for ids in view.log)
                if live < view.calls:
                    early.append(i)
            width, x, mask = recording.left_padded(prompts, dream_like.PAD)
            if sampled:
                torch.manual_seed(SEED)
            view.reset()
            out = host.generate(x, settings, attention_mask=mask)[:, width:].tolist()
            batch8 = [o[:o.index(eos) + 1] if eos in o else o for o in out]
            counts = [(ids[:, width:] == dream_like.MASK).sum(1) for ids in view.log]
            uneven = any(bool((c != c[0]).any()) for c in counts)
            decode = {"block_size": GEN, "max_new_tokens": GEN, **({"rng": "sample", "seed": SEED} if sampled else {})}
            case = {"name": name, "upstream_settings": {**DEFAULTS, **settings, "max_new_tokens": GEN},
                    "workbench": {"params": {**settings, "mask_logit": "keep"}, "decode": decode},
                    "prompts": prompts, "batch1": rows, "batch8": batch8}
            differ = [i for i, (r, b) in enumerate(zip(rows, batch8)) if r["ids"] != b]
            cause = STREAM if sampled else (BATCH_MEAN if uneven else TIES)
            found = [{"row": i, "mode": "any", "cause": EARLY} for i in early] + [
                {"row": i, "mode": "upstream-batch8", "cause": cause} for i in differ]
            if found:
                case["divergences"] = sorted(found, key=lambda d: d["row"])
            cases.append(case)
    weights = dream_like.weights(FOLDER_SEED)
    return recording.transcript(
        "dream", recording.source(UPSTREAM_REPO, commit, UPSTREAM_PATH, UPSTREAM_FUNCTION), __file__, cases,
        note="Dream's sampler on the model of a folder in Dream's published layout (tests/dream_like.py), "
             "loaded by workbench.models.adapters.load_adapter; replayed by tests/test_dream_checkpoints.py",
        folder={"writer": "tests/dream_like.py:write_dream", "seed": FOLDER_SEED,
                "checksum": round(float(sum(w.double().abs().sum() for w in weights.values())), 4)})


RECORDERS = {"greedy": record_greedy, "sampled": record_sampled, "bf16": record_bf16,
             "published_folder/dream_like": record_folder}


def main() -> None:
    recording.record_main(__doc__, "a checkout of github.com/NVlabs/Fast-dLLM (its dream/model/generation_utils.py)",
                          OUT, "folder of the transcripts (default: %(default)s)", load_upstream, RECORDERS)


if __name__ == "__main__":
    main()
