"""Invariants the core enforces on every decision-hook result.

A broken invariant raises `PluginContractError` naming the plugin that answered, the hook and the rule,
with a hint on how to fix it. The checks are a handful of tensor reductions per step, never per token.
"""

from __future__ import annotations

import math

import torch

from workbench.state import BlockState


class PluginContractError(RuntimeError):
    """A decision hook returned a result that breaks the core's contract."""

    def __init__(self, *, plugin: str, hook: str, rule: str, detail: str, hint: str):
        self.plugin, self.hook, self.rule = plugin, hook, rule
        super().__init__(f"plugin {plugin!r} broke the {hook!r} contract ({rule}): {detail}. Hint: {hint}")


def _fail(plugin: str, hook: str, rule: str, detail: str, hint: str):
    raise PluginContractError(plugin=plugin, hook=hook, rule=rule, detail=detail, hint=hint)


def _tensor(result, plugin: str, hook: str, expected: str):
    if not isinstance(result, torch.Tensor):
        _fail(plugin, hook, "type", f"returned {type(result).__name__}, expected a torch.Tensor {expected}",
              "return a tensor, or None to let the next plugin answer")


def _shape(result: torch.Tensor, shape: tuple[int, ...], plugin: str, hook: str, what: str):
    if tuple(result.shape) != shape:
        _fail(plugin, hook, "shape", f"returned shape {tuple(result.shape)}, expected {shape} {what}",
              "answer for every row of the state (done rows included), e.g. build it from state.is_mask")


def check_embed_state(result, state: BlockState, table: torch.Tensor, plugin: str) -> torch.Tensor:
    hook = "embed_state"
    _tensor(result, plugin, hook, "(B, L, D)")
    _shape(result, (state.batch_size, state.length, table.shape[1]), plugin, hook, "(B, L, D)")
    if result.dtype != table.dtype:
        _fail(plugin, hook, "dtype", f"returned {result.dtype}, the model's embeddings are {table.dtype}",
              "cast with .to(model.embedding_table().dtype)")
    # NaN and inf propagate through a float32 sum: one reduction and one scalar read per step
    if not math.isfinite(result.sum(dtype=torch.float32)):
        _fail(plugin, hook, "finite", "returned NaN or inf embeddings", "guard divisions (add an epsilon)")
    return result


def check_promote(result, state: BlockState, plugin: str) -> torch.Tensor:
    hook = "promote"
    _tensor(result, plugin, hook, "(B, L) bool")
    _shape(result, (state.batch_size, state.length), plugin, hook, "(B, L) bool")
    if result.dtype != torch.bool:
        _fail(plugin, hook, "dtype", f"returned {result.dtype}, expected torch.bool",
              "return a boolean mask over positions, e.g. `state.conf >= tau` combined with state.open_masks")
    bad = result > state.open_masks  # result & ~open_masks (bools)
    if bad.any():
        row, pos = (int(v) for v in bad.nonzero()[0])
        _fail(plugin, hook, "promote only active mask positions",
              f"promoted row {row} position {pos}, which is not an active mask position of a running row",
              "AND the result with state.open_masks (= is_mask & active & ~done)")
    return result


def check_converge(result, state: BlockState, plugin: str) -> torch.Tensor:
    hook = "converge"
    _tensor(result, plugin, hook, "(B,) bool")
    _shape(result, (state.batch_size,), plugin, hook, "(B,) bool")
    if result.dtype != torch.bool:
        _fail(plugin, hook, "dtype", f"returned {result.dtype}, expected torch.bool",
              "reduce a per-position condition with .all(-1) or .any(-1)")
    return result


def check_commit(result, state: BlockState, plugin: str) -> torch.Tensor:
    hook = "commit"
    _tensor(result, plugin, hook, "(B, L) long")
    _shape(result, (state.batch_size, state.length), plugin, hook, "(B, L) long")
    if result.dtype.is_floating_point or result.dtype == torch.bool or result.dtype.is_complex:
        _fail(plugin, hook, "dtype", f"returned {result.dtype}, expected integer token ids",
              "return state.ids / state.top or a long tensor built from them")
    rows = state.finishing
    ids = result[rows]
    if ((ids < 0) | (ids >= state.vocab_size)).any():
        _fail(plugin, hook, "ids in [0, vocab)",
              f"committed ids outside [0, {state.vocab_size}) (min {int(ids.min())}, max {int(ids.max())})",
              "commit token ids of the model's vocabulary (state.top holds the latest predictions)")
    if (ids == state.mask_id).any():
        _fail(plugin, hook, "no mask id committed",
              f"committed the mask id {state.mask_id}: the block would never be finished",
              "fill remaining mask positions with state.top, as the default commit does")
    inactive = ~state.active[rows]
    if (ids[inactive] != state.ids[rows][inactive]).any():
        _fail(plugin, hook, "inactive positions keep their ids",
              "changed a position that was not masked at block start",
              "use torch.where(state.active, new_ids, state.ids)")
    return result.long()
