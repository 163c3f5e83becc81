"""Observers that record what a decode did: revision counts per sample, and the full step-by-step trace.

`RevisionCounter` (cheap: one `torch.where` per step) counts, per prompt, the token positions whose committed
token differs from the token they received when promoted (a revision; strategies whose token positions are
final, like `threshold` and `hierarchical`, always count 0). `Tracer` adds, per block and step, the state of
every position: mask or token, top id, confidence, whether the top changed, what was promoted, and the step at
which the block converged (or hit the forward cap). Both are observers: they change no decision.

Register either as an extra plugin (`make_manager(..., extra_plugins=[Tracer()])`). Per-generation scratch
lives in the state's stash; results live on the observer, one entry per `generate` call.

The counter writes its counts into each `RowResult.extras` (`revisions`, and `unrevised_ids`, which `evaluate`
turns into the flags `fixed` / `broke` instead of storing): whether revisions fixed or broke the answer is
checked with every promoted position holding the token it was promoted with (later blocks as decoded, so
this isolates each block's own revisions, not a re-decode). Revocations (`state.revoked`, tokens sent back
to open) are counted per sample as `revocations` when a plugin revokes.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

from workbench import BlockState, StashKey, hookimpl

# Per block: the token each position got when promoted, and which positions have been promoted.
_PROMOTED = StashKey[tuple[int, torch.Tensor, torch.Tensor]]()
# Per block: revocations per row so far.
_REVOKED = StashKey[tuple[int, torch.Tensor]]()


class RevisionCounter:
    """Counts revisions per prompt; `last` holds the counts of the latest `generate` call, in prompt order,
    `last_unrevised` the counterfactual output without revisions (`evaluate(..., sample_extras=counter.extras)`
    stores the counts and turns the counterfactual into fixed / broke flags)."""

    name = "revision-counter"

    def __init__(self) -> None:
        self.last: list[int] = []
        # Per prompt of the latest call: the ids of every block it decoded had no revision happened (each
        # promoted position keeps the token it was promoted with; the other blocks as decoded). Not cut at EOS.
        self.last_unrevised: list[list[int]] = []
        self._counts: dict[int, int] = {}  # prompt index -> revisions, for the generate call in progress
        self._unrevised: dict[int, list[int]] = {}
        self._revocations: dict[int, int] = {}  # prompt index -> tokens sent back to open

    def extras(self, row: int) -> dict[str, Any]:
        """What `evaluate` stores for prompt `row` of the latest call: the revision count, and the unrevised
        ids, which `evaluate` turns into the sample's `fixed` / `broke` flags and does not store."""
        return {"revisions": self.last[row], "unrevised_ids": self.last_unrevised[row]}

    @hookimpl
    def on_step_end(self, state: BlockState) -> None:
        # Tokens sent back to open, summed on the device and read once per block (no sync per step).
        block, revoked = state.stash.get(_REVOKED) or (None, None)
        if block != state.block_index or revoked is None or revoked.shape[0] != state.batch_size:
            revoked = torch.zeros(state.batch_size, dtype=torch.long, device=state.ids.device)
        state.stash[_REVOKED] = (state.block_index, revoked + state.revoked.sum(-1))
        block, first, seen = state.stash.get(_PROMOTED) or (None, None, None)
        if block != state.block_index or first is None or first.shape != state.ids.shape:
            first, seen = state.ids.clone(), torch.zeros_like(state.is_mask)  # (B, L) each
        fresh = state.promoted & ~seen  # (B, L)
        # The token a position gets at promotion is in `ids` (top, or the token a Promotion chose), except on
        # rows that also finish this step, where commit has already replaced `ids`: there it is the top.
        at_promotion = torch.where(state.finishing[:, None], state.top, state.ids)
        first = torch.where(fresh, at_promotion, first)
        state.stash[_PROMOTED] = (state.block_index, first, seen | fresh)

    @hookimpl
    def on_block_end(self, state: BlockState, committed: torch.Tensor) -> None:
        block, first, seen = state.stash.get(_PROMOTED) or (None, None, None)
        if block != state.block_index or first is None:
            return
        _, revoked = state.stash.get(_REVOKED) or (None, None)
        if revoked is not None:
            for row, n in zip(state.rows.tolist(), revoked.tolist()):
                if n:
                    self._revocations[row] = self._revocations.get(row, 0) + int(n)
        promoted = seen & state.active
        revised = (promoted & (committed != first)).sum(-1)  # (B,)
        unrevised = torch.where(promoted, first, committed)  # (B, L)
        for row, n, ids in zip(state.rows.tolist(), revised.tolist(), unrevised.tolist()):
            self._counts[row] = self._counts.get(row, 0) + int(n)
            self._unrevised.setdefault(row, []).extend(ids)

    @hookimpl
    def on_generation_end(self, results: list) -> None:
        self.last = [self._counts.get(i, 0) for i in range(len(results))]
        self.last_unrevised = [self._unrevised.get(i, []) for i in range(len(results))]
        self._counts, self._unrevised = {}, {}
        revocations, self._revocations = self._revocations, {}
        for i, result in enumerate(results):
            result.extras.update(self.extras(i))
            if revocations:
                result.extras["revocations"] = revocations.get(i, 0)


@attrs.define(kw_only=True)
class StepTrace:
    """One refinement step of one row in one block (L positions)."""

    step: int
    is_mask: list[bool]  # mask position after this step's promotion
    top: list[int]
    conf: list[float]
    changed: list[bool]  # token position whose top differs from the previous step's
    promoted: list[bool]
    converged: bool
    finishing: bool
    revoked: list[bool] = attrs.field(factory=list)  # token positions sent back to open at this step


@attrs.define(kw_only=True)
class BlockTrace:
    """One block of one row: its steps, the committed ids, and where promoted tokens were revised."""

    block_index: int
    start: int  # offset within the generated positions
    steps: list[StepTrace] = attrs.field(factory=list)
    committed: list[int] = attrs.field(factory=list)
    revised: list[bool] = attrs.field(factory=list)
    converged_step: int | None = None  # 1-based step at which the convergence test held; None = forward cap

    def as_heatmap(self, token_text) -> list[dict[str, Any]]:
        """Steps in the form `plots.plot_trace_heatmap` takes (`token_text(id) -> str`)."""
        return [{"conf": s.conf, "is_mask": s.is_mask, "top": [token_text(t) for t in s.top], "changed": s.changed,
                 "revoked": s.revoked or [False] * len(s.conf)} for s in self.steps]


class Tracer(RevisionCounter):
    """Records every step of every row; `generations[g][row]` is the list of `BlockTrace` of prompt `row`
    in the g-th `generate` call (`rows(...)` of the latest call)."""

    name = "tracer"

    def __init__(self) -> None:
        super().__init__()
        self.generations: list[list[list[BlockTrace]]] = []
        self._current: dict[int, list[BlockTrace]] = {}

    @property
    def rows(self) -> list[list[BlockTrace]]:
        """Block traces per prompt of the latest `generate` call."""
        return self.generations[-1] if self.generations else []

    @hookimpl
    def on_step_end(self, state: BlockState) -> None:
        prev_seen = state.stash.get(_PROMOTED)
        was_token = (prev_seen[2] if prev_seen and prev_seen[0] == state.block_index
                     else torch.zeros_like(state.is_mask))  # (B, L) token positions before this step
        super().on_step_end(state)
        prev_top = state.prev_top if state.prev_top is not None else state.top
        changed = was_token & (state.top != prev_top)  # (B, L)
        stepped = ~state.done | state.finishing  # (B,) rows that ran a forward this step
        is_mask, top, conf = state.is_mask.tolist(), state.top.tolist(), state.conf.tolist()
        changed_l, promoted, revoked = changed.tolist(), state.promoted.tolist(), state.revoked.tolist()
        for i, row in enumerate(state.rows.tolist()):
            if not bool(stepped[i]):
                continue
            blocks = self._current.setdefault(row, [])
            if not blocks or blocks[-1].block_index != state.block_index:
                blocks.append(BlockTrace(block_index=state.block_index, start=state.start))
            blocks[-1].steps.append(StepTrace(
                step=int(state.steps[i]), is_mask=is_mask[i], top=top[i], conf=[round(c, 6) for c in conf[i]],
                changed=changed_l[i], promoted=promoted[i], converged=bool(state.converged[i]),
                finishing=bool(state.finishing[i]), revoked=revoked[i]))
            if bool(state.finishing[i]) and bool(state.converged[i]):
                blocks[-1].converged_step = int(state.steps[i])

    @hookimpl
    def on_block_end(self, state: BlockState, committed: torch.Tensor) -> None:
        _, first, seen = state.stash.get(_PROMOTED) or (None, torch.full_like(committed, -1),
                                                         torch.zeros_like(state.is_mask))
        super().on_block_end(state, committed)
        revised = (seen & state.active & (committed != first)).tolist()
        for i, row in enumerate(state.rows.tolist()):
            blocks = self._current.get(row)
            if blocks and blocks[-1].block_index == state.block_index:
                blocks[-1].committed = committed[i].tolist()
                blocks[-1].revised = revised[i]

    @hookimpl
    def on_generation_end(self, results: list) -> None:
        super().on_generation_end(results)
        self.generations.append([self._current.get(i, []) for i in range(len(results))])
        self._current = {}
