"""Record golden transcripts of ReMDM (Wang, Schiff, Sahoo, Kuleshov 2025) from the authors' own sampler.

    python benchmarks/reference/record_remdm.py --upstream /work/refs/remdm

`--upstream` is a checkout of github.com/kuleshov-group/remdm (recorded at commit
f830d659fb98d9b2c79ff71bfa12d578312b688a). Its sampler is `Diffusion._sample` with the `ddpm_cache`
predictor, whose step is `Diffusion._ddpm_caching_update` (diffusion.py): the MDLM ancestral step and the
ReMDM schedules `remdm-cap`, `remdm-rescale`, `remdm-conf`, `remdm-loop`, with nucleus sampling, the
float64 exponential-race categorical draw (`_sample_categorical`), the reuse of p_x0 when a step changed
nothing, and the final noise-removal argmax forward. Both are imported from the checkout and run unchanged;
nothing of theirs is copied here. Writes `tests/reference/remdm/mdlm_sampler.json` (format:
`tests/reference/README.md`).

Shims (everything the authors' code touches that is not the sampler):
- `diffusion.py` imports the training stack at module level. Stand-in modules are put in `sys.modules` for
  `hydra`, `hydra.utils`, `lightning` (`LightningModule` = `torch.nn.Module`), `torchmetrics`
  (`aggregation.MeanMetric` = `object`), and the repository's own `dataloader`, `models` and `utils` (which
  pull in datasets, flash-attn, timm); none of them is used by the sampler. `noise_schedule` is the real one
  (`LogLinearNoise`; its import sets torch's JIT fuser flags, which nothing here uses). `diffusion.tqdm` is
  replaced by the identity (no progress bars).
- `remdm-conf` keeps its confidences in a bfloat16 buffer (`_sample`'s `confident_score`) and index-puts
  -p_x0 values into it, which torch refuses unless p_x0 is bfloat16 too (the authors' DiT runs under bf16
  autocast); on this float32 model the step raises. The shim's `_ddpm_caching_update` calls the authors'
  step with that buffer cast to float32 (the dtype of p_x0 here); the workbench keeps it in p_x0's dtype.
- The sampler's methods run on a `Shim` object instead of a `Diffusion` instance (no Lightning module, no
  checkpoint, no CUDA): `_sample`, `_ddpm_caching_update`, `_sample_prior`, `_subs_parameterization` are the
  authors' functions; `config` holds the settings they read; `forward(x, sigma)` stands in for
  `Diffusion.forward`: the tiny model's logits (`tiny.UpstreamView`) put through the authors'
  `_subs_parameterization`, without `torch.cuda.amp.autocast` (the tiny model is float32 anyway) and with
  sigma ignored, as `time_conditioning=False` does (the published setting).
- **Prompts and blocks** (the authors' `_sample` generates unconditionally, whole sequences; their
  `sample_subs_guidance` semi-AR path no longer runs: it unpacks two values from a step that returns three).
  The shim's `forward` conditions the model: it forwards [prompt ; blocks already generated ; the sampler's
  x ; MASK for blocks not yet generated] (the layout the workbench's uncached canvas has for a bidirectional
  model) and returns the log-probabilities of x's positions only, so the authors' sampler state is exactly
  the block being generated and never touches the prompt (on the whole sequence, remdm-cap would remask
  prompt tokens). Semi-autoregressive decoding is one `_sample(steps)` per block, left to right, on the same
  global random stream; each block is a full time schedule t = 1 -> 1e-5 with its own final noise-removal
  forward.
- Random draws: the authors draw from torch's global CPU generator (`rand_like` on the (N, L, V) float64
  categorical tensor, once per time step, whether or not a forward ran). Batch-1 run of prompt i: seeded
  with `torch.manual_seed(workbench.rng.sample_seed(SEED, i))` (the workbench's per-sample stream).
  The batched run (`batch8`, one `_sample` over the 8 left-padded prompts, one shared stream) is seeded with
  `torch.manual_seed(SEED)` and recorded for the single-block case with `rng: batch`.
- Forward counts are read off `UpstreamView.calls` per block, not with `tiny.forwards_until_eos_block`: a
  ReMDM block can be forwarded with no MASK left in it (remasking may follow, and the noise-removal forward
  always runs), which that helper would attribute to the next block.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import torch

from recording import ROOT  # beside this script (its folder heads sys.path when it runs), as tiny is

sys.path.insert(0, str(ROOT))  # this checkout's workbench, ahead of an installed one (tiny imports it)

import recording  # noqa: E402
import tiny  # noqa: E402

from workbench.decoding.rng import sample_seed  # noqa: E402

UPSTREAM_REPO = "kuleshov-group/remdm"
OUT = ROOT / "tests" / "reference" / "remdm" / "mdlm_sampler.json"
SEED = 0
SPEC = tiny.TinySpec(seed=0, init_std=0.5)
PROMPTS = [[5, 6, 7], [20, 31, 9, 12, 40, 17, 8, 25, 33], [11, 4], [44, 13, 27, 38, 15],
           [9, 9, 30, 21, 6, 47, 14], [36, 24], [18, 42, 5, 29, 10, 39], [7, 45, 16, 23, 34, 26, 12, 41]]

# Cases: upstream sampling config (the authors' `sampling.*` keys) and the workbench settings expected to
# reproduce it. Etas are larger than the published ones (0.008 / 0.015 / 0.02 for 1024 steps on 1024
# tokens) so that remasking actually happens in a few steps on a few tokens.
CASES = [
    {"name": "loop", "steps": 12, "gen_length": 16, "block_length": 8,
     "sampling": {"sampler": "remdm-loop", "eta": 0.3, "nucleus_p": 0.9, "t_on": 0.55, "t_off": 0.05,
                  "alpha_on": 0.9},
     "params": {"schedule": "loop", "steps": 12, "eta": 0.3, "nucleus_p": 0.9, "t_on": 0.55, "t_off": 0.05,
                "alpha_on": 0.9}},
    {"name": "cap", "steps": 10, "gen_length": 16, "block_length": 8,
     "sampling": {"sampler": "remdm-cap", "eta": 0.2, "nucleus_p": 0.9},
     "params": {"schedule": "cap", "steps": 10, "eta": 0.2, "nucleus_p": 0.9}},
    {"name": "rescale", "steps": 12, "gen_length": 12, "block_length": 12,
     "sampling": {"sampler": "remdm-rescale", "eta": 0.5, "nucleus_p": 1.0},
     "params": {"schedule": "rescale", "steps": 12, "eta": 0.5, "nucleus_p": 1.0}},
    {"name": "conf", "steps": 10, "gen_length": 16, "block_length": 8,
     "sampling": {"sampler": "remdm-conf", "nucleus_p": 0.9},
     "params": {"schedule": "conf", "steps": 10, "nucleus_p": 0.9}},
    {"name": "mdlm", "steps": 8, "gen_length": 16, "block_length": 8,
     "sampling": {"sampler": "mdlm", "nucleus_p": 1.0},
     "params": {"schedule": "mdlm", "steps": 8, "nucleus_p": 1.0}},
    {"name": "cap_batch", "steps": 10, "gen_length": 10, "block_length": 10, "rng": "batch",
     "sampling": {"sampler": "remdm-cap", "eta": 0.3, "nucleus_p": 0.9},
     "params": {"schedule": "cap", "steps": 10, "eta": 0.3, "nucleus_p": 0.9}},
]


def load_upstream(path: Path):
    """The authors' `diffusion` and `noise_schedule` modules, imported from the checkout with stand-ins for
    the training stack they import at module level (see the module docstring)."""
    def stub(name: str, **attrs) -> types.ModuleType:
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module
        return module

    hydra = stub("hydra")
    hydra.utils = stub("hydra.utils")
    stub("lightning", LightningModule=torch.nn.Module)
    torchmetrics = stub("torchmetrics")
    torchmetrics.aggregation = stub("torchmetrics.aggregation", MeanMetric=object)
    for name in ("dataloader", "models", "utils"):
        stub(name)
    sys.path.insert(0, str(path))
    diffusion = importlib.import_module("diffusion")
    noise_schedule = importlib.import_module("noise_schedule")
    diffusion.tqdm = lambda iterable, *args, **kwargs: iterable
    return diffusion, noise_schedule


def namespace(**fields) -> types.SimpleNamespace:
    return types.SimpleNamespace(**fields)


def make_shim(diffusion, noise_schedule, view: tiny.UpstreamView):
    """A stand-in `self` for the authors' sampler methods (see the module docstring)."""
    cls = diffusion.Diffusion

    class Shim:
        _sample = cls._sample
        _sample_prior = cls._sample_prior
        _subs_parameterization = cls._subs_parameterization

        def __init__(self):
            self.view = view
            self.device = torch.device("cpu")
            self.mask_index = tiny.MASK
            self.parameterization = "subs"
            self.sampler = "ddpm_cache"  # configs/config.yaml: sampling.predictor
            self.time_conditioning = False
            self.neg_infinity = -1000000.0
            self.noise = noise_schedule.LogLinearNoise()
            self.prefix = self.prefix_valid = None
            self.future = 0

        def configure(self, *, sampling: dict, steps: int, length: int, batch: int) -> None:
            defaults = {"eta": 0.0, "t_on": 0.0, "t_off": 0.0, "alpha_on": 0.0, "nucleus_p": 1.0}
            self.config = namespace(
                sampling=namespace(**{**defaults, **sampling}, steps=steps, dfm=False, noise_removal=True),
                loader=namespace(eval_batch_size=batch), model=namespace(length=length),
                noise=namespace(type="loglinear"))

        def _ddpm_caching_update(self, x, t, dt, p_x0=None, conf=None):
            """The authors' step, handed remdm-conf's confidence buffer in float32 (see the docstring)."""
            return cls._ddpm_caching_update(self, x, t, dt, p_x0=p_x0, conf=conf.float())

        def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
            """Log p_x0 of the block x (N, L) given the prompt and earlier blocks (`Diffusion.forward`'s
            role; see the module docstring)."""
            n = x.shape[0]
            future = torch.full((n, self.future), tiny.MASK, dtype=torch.long)
            ids = torch.cat([self.prefix, x, future], dim=1)
            valid = torch.cat([self.prefix_valid, torch.ones(n, x.shape[1] + self.future, dtype=torch.bool)], 1)
            logits = self.view(ids, attention_mask=valid).logits[:, self.prefix.shape[1]:][:, :x.shape[1]]
            return self._subs_parameterization(logits=logits.clone(), xt=x)

    return Shim()


def left_pad(prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), tiny.PAD, dtype=torch.long)
    valid = torch.zeros(len(prompts), width, dtype=torch.bool)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        valid[i, width - len(p):] = True
    return ids, valid


def run_blocks(shim, prompts: list[list[int]], case: dict) -> tuple[list[list[int]], list[list[int]]]:
    """The authors' `_sample` once per block on the (left-padded) prompts: generated ids (N, G) and the
    forwards each block cost (one list per block; the whole batch is forwarded together)."""
    g, b = case["gen_length"], case["block_length"]
    prefix, prefix_valid = left_pad(prompts)
    n = len(prompts)
    forwards = []
    for start in range(0, g, b):
        length = min(b, g - start)
        shim.configure(sampling=case["sampling"], steps=case["steps"], length=length, batch=n)
        shim.prefix, shim.prefix_valid, shim.future = prefix, prefix_valid, g - start - length
        before = shim.view.calls
        x = shim._sample(num_steps=case["steps"])  # (N, length): the authors' loop, schedule and noise removal
        forwards.append(shim.view.calls - before)
        prefix = torch.cat([prefix, x], dim=1)
        prefix_valid = torch.cat([prefix_valid, torch.ones_like(x, dtype=torch.bool)], dim=1)
    generated = prefix[:, prefix.shape[1] - g:]
    return generated.tolist(), forwards


def nfe_until_eos_block(generated: list[int], forwards: list[int], block: int) -> int:
    """Forwards up to the end of the block holding the first EOS (all blocks when there is none)."""
    ends = generated.index(tiny.EOS) + 1 if tiny.EOS in generated else len(generated)
    return sum(forwards[:(ends - 1) // block + 1])


def record_case(diffusion, noise_schedule, model, case: dict) -> dict:
    view = tiny.UpstreamView(model)
    shim = make_shim(diffusion, noise_schedule, view)
    batch_stream = case.get("rng") == "batch"
    batch1 = []
    for i, prompt in enumerate(PROMPTS):
        # The workbench's stream for sample i: per-sample seed, or the one shared stream seeded with SEED.
        torch.manual_seed(SEED if batch_stream else sample_seed(SEED, i))
        (generated,), forwards = run_blocks(shim, [prompt], case)
        batch1.append({"ids": tiny.cut_after_eos(generated),
                       "nfe": nfe_until_eos_block(generated, forwards, case["block_length"])})
    out = {"name": case["name"],
           "upstream_settings": {"predictor": "ddpm_cache", "steps": case["steps"], "gen_length": case["gen_length"],
                                 "block_length": case["block_length"], "noise_removal": True,
                                 "time_conditioning": False, "noise": "loglinear", "eps": 1e-5,
                                 **case["sampling"]},
           "workbench": {"params": case["params"],
                         "decode": {"block_size": case["block_length"], "max_new_tokens": case["gen_length"],
                                    "max_forwards_per_block": case["steps"] + 1, "seed": SEED,
                                    **({"rng": "batch"} if batch_stream else {})}},
           "prompts": PROMPTS, "batch1": batch1}
    if batch_stream:
        torch.manual_seed(SEED)
        together, _ = run_blocks(shim, PROMPTS, case)
        out["batch8"] = [tiny.cut_after_eos(ids) for ids in together]
        # Alone, each prompt is its own batch on the stream seeded with SEED; together, the 8 rows share it.
        out["divergences"] = [
            {"row": i, "mode": "batch8",
             "cause": "rng=batch: one stream for the whole batch, so a row's draws depend on the rows beside it; "
                      "the workbench's batch of 8 is compared with the authors' batched run instead (batch8)"}
            for i in range(len(PROMPTS)) if out["batch8"][i] != batch1[i]["ids"]]
    return out


def main() -> None:
    parser = recording.arguments(__doc__, "checkout of kuleshov-group/remdm", OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    commit = recording.commit_of(args.upstream)
    diffusion, noise_schedule = load_upstream(args.upstream.resolve())
    model = tiny.build(SPEC)
    source = recording.source(UPSTREAM_REPO, commit, "diffusion.py",
                              "Diffusion._sample (predictor ddpm_cache: Diffusion._ddpm_caching_update)")
    described = tiny.described(SPEC, model)
    cases = [record_case(diffusion, noise_schedule, model, case) for case in CASES]
    transcript = recording.transcript("remdm", source, __file__, cases, model=described)
    recording.write(args.out, transcript)  # compact: one line per id list
    for case in transcript["cases"]:
        eos = sum(tiny.EOS in r["ids"] for r in case["batch1"])
        print(f"{case['name']}: nfe {[r['nfe'] for r in case['batch1']]}, {eos}/8 rows end in EOS")
    print(f"wrote {recording.shown(args.out)}")


if __name__ == "__main__":
    main()
