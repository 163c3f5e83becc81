"""ReMDM remasking (Wang, Schiff, Sahoo, Kuleshov 2025), as the authors' sampler runs it, block by block.

Reference: github.com/kuleshov-group/remdm @ f830d659, `diffusion.py`: `Diffusion._sample` with the
`ddpm_cache` predictor, whose step is `_ddpm_caching_update`. Each block runs the reverse process from t = 1
to t = 1e-5 in `steps` time steps (loglinear noise: alpha_t = 1 - t), then one noise-removal forward. At a
time step s < t every position draws z_s from the ReMDM posterior given x_theta (the forward's distribution,
MASK removed, one-hot on the token at token positions, cut to its nucleus `nucleus_p`):

    token position:  keep with 1 - sigma_t, remask with sigma_t
    masked position: a token ~ x_theta with (alpha_s - (1 - sigma_t) alpha_t) / (1 - alpha_t), else MASK

`schedule` chooses sigma_t (sigma_max = min(1, (1 - alpha_s) / alpha_t)): `cap` min(eta, sigma_max),
`rescale` eta * sigma_max, `conf` sigma_max weighted per position by a softmax over the block of -p(token at
its unmasking), `loop` MDLM while alpha rises to `alpha_on` (t in [1, t_on]), then sigma = eta at constant
alpha_on (t in (t_off, t_on]), then MDLM to alpha = 1; `mdlm` plain MDLM ancestral steps (sigma = 0).

A time step that changes nothing reuses the same x_theta at the next time step (the authors' cache), so one
workbench step (one forward) runs time steps until one changes the block; when the schedule is spent, the
next forward is the noise removal: every open position takes its argmax. Hooks: `revoke` runs the time steps
and returns the remasked positions, `promote` the unmasked ones with their drawn tokens (no progress
fallback), `converge` ends the block at the noise-removal forward, `commit` keeps the ids.

Random draws: per time step one (L, V) float64 uniform tensor from the row's generator (`state.rng`), the
authors' exponential race `argmax q / (1e-10 - log(u + 1e-10))`; with `rng=batch` one (B, L, V) draw for
the block and one time index for all rows, as their batched loop. `--tau` sets `eta`. Differences from the
authors' code are listed in docs/algorithms.md.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from plugins.logits import mask_logit_rule
from workbench import BlockState, Promotion, StashKey, UnsupportedSettings, hookimpl

SCHEDULES = ("loop", "cap", "rescale", "conf", "mdlm")
T_END = 1e-5  # `_sample(eps=1e-5)`: time steps at linspace(1, T_END, steps + 1)
RACE_EPS = 1e-10  # `_sample_categorical`: argmax(q / (1e-10 - log(u + 1e-10)))


def log_x_theta(logits: torch.Tensor) -> torch.Tensor:
    """log x_theta (n, L, V) from logits whose MASK entry is -inf: `_subs_parameterization`'s log-softmax
    (its MASK logit - 1e6 contributes exactly 0 to the logsumexp, as -inf does)."""
    return logits - torch.logsumexp(logits, dim=-1, keepdim=True)


def x_theta(log_p: torch.Tensor, ids: torch.Tensor, is_token: torch.Tensor, nucleus_p: float) -> torch.Tensor:
    """p_x0 (n, L, V): the model's distribution at open positions and one-hot on the token at token positions
    (carry-over unmasking), truncated to its top-p nucleus as `_ddpm_caching_update` does it."""
    p = log_p.exp()
    one_hot = torch.zeros_like(p).scatter_(-1, ids[..., None], 1.0)
    p = torch.where(is_token[..., None], one_hot, p)
    if nucleus_p < 1:  # keep sorted probabilities while their cumsum <= p, always the first; renormalise
        ordered, order = torch.sort(p, descending=True, dim=-1)
        keep = ordered.cumsum(-1) <= nucleus_p
        keep[..., 0] = True
        kept = ordered * keep
        kept /= kept.sum(dim=-1, keepdim=True)
        p = torch.zeros_like(p).scatter_(-1, order, kept)
    return p


def race(q: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """A categorical draw (n, L) from unnormalised q (n, L, V) and uniforms (n, L, V) float64: argmax q / E,
    E = 1e-10 - log(u + 1e-10) ~ Exp(1) (the authors' `_sample_categorical`, in float64)."""
    return (q.to(torch.float64) / (RACE_EPS - (uniform + RACE_EPS).log())).argmax(dim=-1)


class ReverseStep:
    """One ReMDM time step of a block, in the authors' float arithmetic (float32 times, python-float sigmas).

    `strategy` gives the schedule and its parameters; `steps` time steps run from t = 1 down to T_END.
    """

    def __init__(self, strategy: ReMDM, steps: int, mask_id: int):
        self.s, self.steps, self.mask_id = strategy, steps, mask_id
        self.times = torch.linspace(1, T_END, steps + 1)  # float32, as `_sample`
        self.dt = (1 - T_END) / max(steps, 1)  # steps = 0: only the noise-removal forward, no time step

    def __call__(self, i: int, x: torch.Tensor, p: torch.Tensor, uniform: torch.Tensor,
                 conf: torch.Tensor) -> torch.Tensor:
        """z_s (n, L) long at time step i from z_t = x (n, L) and p_x0 (n, L, V); `conf` (n, L), the `conf`
        schedule's scores, is updated in place."""
        s = self.s
        t = self.times[i].reshape(1).to(p.device)  # (1,) float32
        move_t, move_s = t[:, None, None], (t - self.dt)[:, None, None]  # 1 - alpha_t, 1 - alpha_s
        if s.schedule == "loop":
            time = t[0].item()
            if time > s.t_on:  # phase 1: alpha rises linearly from 0 to alpha_on over t in [1, t_on]
                move_t = (1 - (1 - t) * s.alpha_on / (1 - s.t_on))[:, None, None]
                move_s = (1 - (1 - t + self.dt) * s.alpha_on / (1 - s.t_on))[:, None, None]
            elif time <= s.t_off:  # phase 3: alpha rises from alpha_on to 1 over t in [t_off, 0]
                move_t = (t * (1 - s.alpha_on) / s.t_off)[:, None, None]
                move_s = ((t - self.dt) * (1 - s.alpha_on) / s.t_off)[:, None, None]
            else:  # phase 2: alpha stays alpha_on, tokens are remasked with sigma = eta
                return self.posterior(x, p, uniform, s.eta, s.alpha_on, s.alpha_on)
        if s.schedule in ("mdlm", "loop"):
            return self.mdlm(x, p, uniform, move_t, move_s)
        alpha_t, alpha_s = (1 - move_t)[0].item(), (1 - move_s)[0].item()
        if s.schedule == "cap":
            return self.posterior(x, p, uniform, min(s.eta, (1 - alpha_s) / alpha_t) if alpha_t > 0 else s.eta,
                                  alpha_t, alpha_s)
        sigma_max = min(1, (1 - alpha_s) / alpha_t) if alpha_t > 0 else 1
        if s.schedule == "rescale":
            return self.posterior(x, p, uniform, s.eta * sigma_max, alpha_t, alpha_s)
        # conf: sigma_max weighted by a softmax over the block of the scores (-inf at masked positions)
        weight = conf.softmax(dim=-1)
        weight[x == self.mask_id] = 0
        z = self.posterior(x, p, uniform, (weight * sigma_max)[:, :, None], alpha_t, alpha_s)
        unmasked, remasked = (x == self.mask_id) & (z != self.mask_id), (x != self.mask_id) & (z == self.mask_id)
        conf[unmasked] = -p.gather(-1, z[..., None])[..., 0][unmasked].to(conf.dtype)
        conf[remasked] = -torch.inf
        return z

    def mdlm(self, x, p, uniform, move_t, move_s) -> torch.Tensor:
        """MDLM's ancestral step: a masked position unmasks with (alpha_s - alpha_t) / (1 - alpha_t) (here
        unnormalised: p (mc_t - mc_s) vs mc_s at MASK); token positions are carried over."""
        q = p * (move_t - move_s)
        q[:, :, self.mask_id] = move_s[:, :, 0]
        return torch.where(x != self.mask_id, x, race(q, uniform))

    def posterior(self, x, p, uniform, sigma, alpha_t: float, alpha_s: float) -> torch.Tensor:
        """The ReMDM posterior with remasking probability `sigma` (a float, or (n, L, 1) for `conf`)."""
        sigma_at_mask = sigma if isinstance(sigma, float) else sigma[..., 0]
        keep = p * (1 - sigma)  # token positions (p one-hot): kept with 1 - sigma, remasked with sigma
        keep[..., self.mask_id] = sigma_at_mask
        unmask = p * ((alpha_s - (1 - sigma) * alpha_t) / (1 - alpha_t))  # masked positions
        unmask[..., self.mask_id] = (1 - alpha_s - sigma_at_mask * alpha_t) / (1 - alpha_t)
        return race(torch.where((x != self.mask_id)[..., None], keep, unmask), uniform)


@attrs.define(eq=False)
class _Block:
    """The strategy's scratch for the current block (`state.stash[_BLOCK]`)."""

    index: int
    step: ReverseStep
    next_step: list[int]  # per row, the time step its next draw runs (== steps: the noise removal is due)
    conf: torch.Tensor  # (B, L) the `conf` schedule's scores
    at: int = -1  # the workbench step the draws below belong to
    drawn: torch.Tensor | None = None  # (B, L) long, z_s of the last time step each row ran this step
    ran: torch.Tensor | None = None  # (B,) bool, rows that ran time steps this step
    denoise: torch.Tensor | None = None  # (B,) bool, rows whose forward this step is the noise removal
    argmax: torch.Tensor | None = None  # (B, L) long, argmax of log x_theta (the noise-removal tokens)


_BLOCK = StashKey[_Block]()


def _steps(instance, attribute, value):
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
        raise ValueError(f"ReMDM: parameter {attribute.name!r} must be a positive integer, got {value!r}")


def _open_unit(instance, attribute, value):
    if not 0 < value < 1:
        raise ValueError(f"ReMDM: parameter {attribute.name!r} must lie in (0, 1), got {value!r}")


@attrs.frozen(eq=False, kw_only=True)
class ReMDM:
    """ReMDM's remasking sampler; defaults are the authors' `remdm-loop.sh`."""

    name: ClassVar[str] = "remdm"
    main_threshold: ClassVar[str] = "eta"
    # `workbench ablate`'s default sweep of the main knob (remasking strength: MDLM, the authors' default, stronger).
    tau_grid: ClassVar[tuple[float, ...]] = (0.0, 0.02, 0.1)
    needs_logits: ClassVar[bool] = True  # x_theta is the distribution of the processed logits
    claims: ClassVar[tuple[str, ...]] = ()  # it remasks: neither contiguity nor monotonicity holds

    schedule: str = attrs.field(default="loop", validator=attrs.validators.in_(SCHEDULES))
    steps: int | None = attrs.field(default=None, validator=_steps)
    eta: float = attrs.field(default=0.02, converter=float,
                             validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)])
    nucleus_p: float = attrs.field(default=0.9, converter=float,
                                   validator=[attrs.validators.gt(0.0), attrs.validators.le(1.0)])
    t_on: float = attrs.field(default=0.55, converter=float, validator=_open_unit)
    t_off: float = attrs.field(default=0.05, converter=float, validator=_open_unit)
    alpha_on: float = attrs.field(default=0.9, converter=float, validator=_open_unit)
    noise_removal: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))

    def __attrs_post_init__(self):
        if self.t_off >= self.t_on:
            raise ValueError(f"ReMDM: t_off ({self.t_off}) must be below t_on ({self.t_on})")

    def forwards_per_block(self, length: int) -> int:
        """Called by the core at each block start when no --max-forwards is given: `steps` time steps (unset:
        one per position of the block, the authors' T = L) plus the noise-removal forward."""
        return (self.steps if self.steps is not None else length) + int(self.noise_removal)

    def time_steps(self, state: BlockState) -> int:
        """Time steps per block: `steps`; unset, one per position of the block, or with an explicit
        --max-forwards as many as it leaves room for (0 at a cap of 1 with noise removal: the block is then one
        argmax forward)."""
        cap, final = state.cap, int(self.noise_removal)
        if self.steps is None:
            explicit = state.config.max_forwards_per_block
            return max(explicit - final, 0) if explicit is not None else state.length
        if cap < self.steps + final:
            fits = f" or --set steps={cap - final}" if cap > final else ""
            raise UnsupportedSettings(
                f"remdm runs up to {self.steps} time steps{' + 1 noise-removal forward' * final} per "
                             f"block, but the forward cap is {cap}: pass --max-forwards {self.steps + final}{fits}")
        return self.steps

    def scratch(self, state: BlockState) -> _Block:
        """The current block's scratch, made at its first step (which also checks the decode's settings)."""
        block = state.stash.get(_BLOCK)
        if block is None or block.index != state.block_index:
            if state.uniform or state.mask_id is None:
                raise UnsupportedSettings("remdm remasks to the mask token: it needs an absorbing-state canvas "
                                 "(a model with a mask token, --noise mask or auto)")
            b, length = state.ids.shape
            block = _Block(index=state.block_index, step=ReverseStep(self, self.time_steps(state), state.mask_id),
                           next_step=[0] * b, conf=torch.full((b, length), -torch.inf, device=state.ids.device))
            state.stash[_BLOCK] = block
        return block

    @hookimpl
    def process_logits(self, state: BlockState, logits: torch.Tensor) -> torch.Tensor:
        """Called by the core once per step, after the forward: the logits with MASK removed (SUBS: x_theta
        never predicts MASK). Answered here, not left to the core's default, because the posterior needs it."""
        return mask_logit_rule("remove", state, logits)

    @hookimpl
    def revoke(self, state: BlockState) -> torch.Tensor:
        """Called by the core once per step, after the forward: run the rows' next time steps on this
        forward's x_theta until one changes the block (or the schedule is spent). Returns the token positions
        whose draw is MASK (B, L) bool; the draws are kept for `promote`."""
        block = self.scratch(state)
        temperature = state.config.temperature  # an extension: the authors' sampler has none (T = 0)
        log_p = log_x_theta(state.logits / temperature if temperature > 0 else state.logits)  # (B, L, V)
        p = x_theta(log_p, state.ids, ~state.is_mask, self.nucleus_p)
        block.conf = block.conf.to(p.dtype)
        block.drawn, block.argmax = state.ids.clone(), log_p.argmax(-1)
        block.ran, block.denoise = torch.zeros_like(state.running), torch.zeros_like(state.running)
        if state.rng.mode == "batch":
            self._advance_together(state, block, p)
        else:
            for row in state.running.nonzero().flatten().tolist():
                self._advance_row(state, block, p, row)
        block.at = state.step
        return state.token_positions & block.ran[:, None] & (block.drawn == state.mask_id)

    def _advance_row(self, state: BlockState, block: _Block, p: torch.Tensor, row: int) -> None:
        """Per-sample stream: row `row` runs its own time steps with (1, L, V) draws from its generator."""
        i, steps = block.next_step[row], block.step.steps
        if i == steps:
            block.denoise[row] = True
            return
        gen, rows = state.rng.generator(row), slice(row, row + 1)
        x, active, conf = state.ids[rows], state.active[rows], block.conf[rows]
        while i < steps:
            uniform = torch.rand((1, *p.shape[1:]), dtype=torch.float64, generator=gen, device=p.device)
            z = torch.where(active, block.step(i, x, p[rows], uniform, conf), x)  # fill_block's ids stay
            i += 1
            if not torch.equal(z, x):
                break
        block.conf[rows], block.drawn[rows], block.next_step[row], block.ran[row] = conf, z, i, True

    def _advance_together(self, state: BlockState, block: _Block, p: torch.Tensor) -> None:
        """Batch stream: one time index and one (B, L, V) draw per time step for the whole block; the step
        ends when any row changed (the authors' batched loop)."""
        rows = state.running.nonzero().flatten().tolist()
        i, steps = block.next_step[rows[0]], block.step.steps
        if i == steps:
            block.denoise[rows] = True
            return
        gen = state.rng.generator(rows[0])  # the shared generator
        while i < steps:
            uniform = torch.rand(p.shape, dtype=torch.float64, generator=gen, device=p.device)
            z = torch.where(state.active, block.step(i, state.ids, p, uniform, block.conf), state.ids)
            i += 1
            if not torch.equal(z[rows], state.ids[rows]):
                break
        block.drawn[rows], block.ran[rows] = z[rows], True
        for row in rows:
            block.next_step[row] = i

    @hookimpl
    def promote(self, state: BlockState) -> Promotion:
        """Called by the core once per step, after `revoke`: the masked positions whose draw is a token take
        it; at a row's noise-removal forward every open position takes its argmax. Opts out of the progress
        fallback (a time step may unmask nothing)."""
        block = state.stash.get(_BLOCK)
        if block is None or block.at != state.step:
            raise RuntimeError("remdm's promote reads the draws of remdm's revoke, but another plugin answered revoke")
        unmasked = state.open_masks & ~state.revoked & block.ran[:, None] & (block.drawn != state.mask_id)
        final = state.open_masks & block.denoise[:, None]
        return Promotion(positions=unmasked | final, tokens=torch.where(final, block.argmax, block.drawn),
                         fallback=False)

    @hookimpl
    def converge(self, state: BlockState) -> torch.Tensor:
        """Called by the core once per step, after promotion: (B,) True for the rows whose noise-removal
        forward just ran (without noise removal: whose schedule was spent at this step)."""
        block = state.stash[_BLOCK]
        if self.noise_removal:
            return block.denoise.clone()
        spent = torch.tensor([i == block.step.steps for i in block.next_step], device=block.ran.device)
        return spent & block.ran

    @hookimpl
    def commit(self, state: BlockState) -> torch.Tensor:
        """Called by the core in a step where rows finish: the block's ids. Without noise removal, positions
        still masked stay MASK (counted as `unfilled`); with it none is left (the strategy refuses a forward
        cap that could end a block early)."""
        return torch.where(state.is_mask, state.top, state.ids) if self.noise_removal else state.ids


STRATEGY = ReMDM
