"""Invariants the core enforces on every decision-hook result, and the errors that name a faulty plugin.

A broken invariant raises `PluginContractError` naming the plugin that answered (and any wrapper that
changed the result), the hook and the rule, with a hint on how to fix it. An exception raised inside a hook
implementation becomes a `PluginRuntimeError` naming the plugin, the hook and the file:line it came from
(the original exception is chained, so the traceback stays available). `StateGuard` catches a plugin that
writes the core's state (the rule: plugins write only their stash) from tensor version counters.

The checks are a handful of tensor reductions per step, never per token; the value checks (finite embeddings
and logits) share one host sync per step (`StepValues`).
"""

from __future__ import annotations

import math
import traceback
from pathlib import Path

import torch

from workbench.decoding.state import FREE, BlockState, Guidance, Promotion

# Embeddings more than this many times larger than the embedding table's largest entry overflow a forward
# (and are almost surely a bug; a convex mixture of table rows never exceeds 1x).
HUGE_EMBEDDING_FACTOR = 1e6


class UnsupportedSettings(ValueError):
    """Raised by a hook implementation when this decode's settings are ones the strategy cannot run (a forward
    cap below its fixed schedule, a decode temperature where it samples with its own, lengths its schedule
    cannot split). The message says what to pass instead. `workbench run` prints it as a one-line usage error
    (exit 2) whoever raised it; `check-plugin` skips the drawn problem (it is not a broken invariant) and
    marks a cell `n/a` only when the plugin refuses every problem drawn for it."""


class PluginContractError(RuntimeError):
    """A decision hook returned a result that breaks the core's contract."""

    def __init__(self, *, plugin: str, hook: str, rule: str, detail: str, hint: str):
        self.plugin, self.hook, self.rule = plugin, hook, rule
        super().__init__(f"plugin {plugin!r} broke the {hook!r} contract ({rule}): {detail}. Hint: {hint}")


class PluginRuntimeError(RuntimeError):
    """A hook implementation raised; `__cause__` is the original exception (its traceback is kept)."""

    def __init__(self, *, plugin: str, hook: str, error: BaseException, where: str, builtin: bool = False):
        self.plugin, self.hook, self.where, self.error, self.builtin = plugin, hook, where, error, builtin
        super().__init__(f"plugin {plugin!r} raised {type(error).__name__} in hook {hook!r} at {where}: {error}")

    @property
    def about_input(self) -> bool:
        """A plugin refused settings it cannot run (`UnsupportedSettings`, anyone's), or the project's own
        plugin refused what it was asked (bad settings, a model that lacks something): the message is written
        for the user, so the CLI prints it as a one-line usage error."""
        from workbench.decoding.state import ModelInputsDenied

        return isinstance(self.error, UnsupportedSettings) or (
            self.builtin and isinstance(self.error, (ValueError, ModelInputsDenied)))

    def traceback_text(self) -> str:
        """The original exception's traceback, for `--debug` output and bug reports."""
        return "".join(traceback.format_exception(type(self.error), self.error, self.error.__traceback__))


def origin(error: BaseException, function=None) -> str:
    """`file:line` where `error` was raised, preferring the innermost frame of `function`'s file (the plugin's
    own code) over library frames below it."""
    frames = traceback.extract_tb(error.__traceback__)
    wanted = getattr(getattr(function, "__code__", None), "co_filename", None)
    mine = [f for f in frames if wanted and f.filename == wanted]
    frame = (mine or frames or [None])[-1]
    return f"{Path(frame.filename).name}:{frame.lineno}" if frame else "?"


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


def _bool_positions(result, state: BlockState, plugin: str, hook: str, hint: str) -> None:
    _tensor(result, plugin, hook, "(B, L) bool")
    _shape(result, (state.batch_size, state.length), plugin, hook, "(B, L) bool")
    if result.dtype != torch.bool:
        _fail(plugin, hook, "dtype", f"returned {result.dtype}, expected torch.bool", hint)


def _token_ids(result, state: BlockState, plugin: str, hook: str, what: str, hint: str) -> None:
    """A (B, L) tensor of integer token ids (not floats, bools or complex numbers)."""
    _tensor(result, plugin, hook, f"(B, L) long{what}")
    _shape(result, (state.batch_size, state.length), plugin, hook, f"(B, L) long{what}")
    if result.dtype.is_floating_point or result.dtype == torch.bool or result.dtype.is_complex:
        _fail(plugin, hook, "dtype", f"returned {result.dtype}{what}, expected integer token ids", hint)


def _first(bad: torch.Tensor) -> tuple[int, int]:
    row, pos = (int(v) for v in bad.nonzero()[0])
    return row, pos


def check_fill_block(result, state: BlockState, plugin: str) -> torch.Tensor:
    hook = "fill_block"
    _token_ids(result, state, plugin, hook, "",
               "return a long tensor: token ids where a position is fixed, workbench.decoding.state.FREE (-1) elsewhere")
    fixed = result != FREE
    bad = fixed & ((result < 0) | (result >= state.vocab_size))
    if bad.any():
        row, pos = _first(bad)
        _fail(plugin, hook, "ids in [0, vocab) or FREE", f"row {row} position {pos} holds {int(result[row, pos])}",
              f"fix ids of the model's vocabulary (size {state.vocab_size}); FREE = -1 leaves a position to decode")
    if state.mask_id is not None and (fixed & (result == state.mask_id)).any():
        _fail(plugin, hook, "no mask id fixed", f"fixed the mask id {state.mask_id}",
              "leave a position to decode with FREE (-1) instead of fixing the mask id")
    return result.long()


def check_guidance(result, state: BlockState, plugin: str) -> Guidance:
    hook = "guidance"
    if not isinstance(result, Guidance):
        _fail(plugin, hook, "type", f"returned {type(result).__name__}, expected a Guidance",
              "return Guidance(context=..., scale=...) (from workbench import Guidance), or None for no guidance")
    context, shape = result.context, tuple(state.context.shape)
    _tensor(context, plugin, hook, f"{shape} long (Guidance.context)")
    _shape(context, shape, plugin, hook, "(B, C) long (Guidance.context), shaped like state.context")
    if context.dtype.is_floating_point or context.dtype == torch.bool or context.dtype.is_complex:
        _fail(plugin, hook, "dtype", f"Guidance.context is {context.dtype}, expected integer token ids",
              "build it from state.context (e.g. state.context.clone() with the prompt replaced)")
    if context.numel() and ((context < 0) | (context >= state.vocab_size)).any():
        _fail(plugin, hook, "ids in [0, vocab)", f"Guidance.context holds ids outside [0, {state.vocab_size})",
              "use ids of the model's vocabulary (the mask id for the removed prompt)")
    scale = result.scale
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale < 0:
        _fail(plugin, hook, "scale a finite number >= 0", f"Guidance.scale is {scale!r}",
              "pass the guidance weight w as a float, e.g. 0.5 (0 = the conditional logits)")
    return Guidance(context=context.long(), scale=float(scale))


def check_embed_state(result, state: BlockState, table: torch.Tensor, plugin: str) -> torch.Tensor:
    """Shape and dtype at once; the values (finite, of a sane size) with the step's logits, in
    `StepValues.check`, so one host sync per step covers every value check."""
    hook = "embed_state"
    _tensor(result, plugin, hook, "(B, L, D)")
    # With the canvas view the inputs may also cover every generated position after the block.
    if not (state.canvas_view and result.dim() == 3 and result.shape[1] == state.length + state.after):
        _shape(result, (state.batch_size, state.length, table.shape[1]), plugin, hook,
               "(B, L, D)" + (f", or (B, L + {state.after}, D) with the canvas view" if state.canvas_view else ""))
    elif (result.shape[0], result.shape[2]) != (state.batch_size, table.shape[1]):
        _shape(result, (state.batch_size, state.length + state.after, table.shape[1]), plugin, hook,
               "(B, L + after, D): the block and every generated position after it")
    if result.dtype != table.dtype:
        _fail(plugin, hook, "dtype", f"returned {result.dtype}, the model's embeddings are {table.dtype}",
              "cast with .to(model.embedding_table().dtype)")
    return result


_SCALES: dict[int, tuple[torch.Tensor, int, float]] = {}


def table_scale(table: torch.Tensor) -> float:
    """The largest |entry| of an embedding table, computed once per table (and again after it changes)."""
    seen = _SCALES.get(id(table))
    if seen is None or seen[0] is not table or seen[1] != table._version:
        seen = _SCALES[id(table)] = (table, table._version, float(table.detach().abs().amax()))
    return seen[2]


def check_process_logits(result, logits: torch.Tensor, plugin: str) -> torch.Tensor:
    """Shape and dtype at once; finiteness in `StepValues.check`."""
    hook = "process_logits"
    _tensor(result, plugin, hook, "(b, L, V)")
    _shape(result, tuple(logits.shape), plugin, hook, "(b, L, V): the running rows' logits")
    if not result.dtype.is_floating_point:
        _fail(plugin, hook, "dtype", f"returned {result.dtype}, expected floating logits",
              "return the (transformed) logits tensor you were given")
    return result


class StepValues:
    """The value checks of one step, read with a single host sync (a GPU keeps working until then):

    - the embeddings `embed_state` returned: finite, and at most `HUGE_EMBEDDING_FACTOR` times the embedding
      table's largest entry (one `amax`: NaN propagates through it, and huge-but-finite values are refused by
      size);
    - the forward's own logits: a finite maximum at every position (a model returning NaN is named as the model,
      not as a plugin);
    - the `process_logits` answer: a finite maximum at every position (NaN anywhere, +inf, or a position whose
      every logit is -inf would make its softmax NaN, and every later number wrong).

    `embedded` and `forwarded` queue reductions; `check` reads them all at once, before anything reads the
    processed logits, and raises naming the first culprit in the order the values were made.
    """

    __slots__ = ("embeds", "embed_plugin", "scale", "raw_peak")

    def __init__(self) -> None:
        self.embeds = self.embed_plugin = self.raw_peak = None
        self.scale = 0.0

    def embedded(self, embeds: torch.Tensor, table: torch.Tensor, plugin: str) -> None:
        self.embeds, self.embed_plugin, self.scale = embeds, plugin, table_scale(table)

    def forwarded(self, logits: torch.Tensor) -> None:
        """Called before `process_logits`, which may change the logits in place."""
        self.raw_peak = logits.detach().amax(-1)  # (b, L); NaN anywhere in a row makes its max NaN

    def check(self, processed: torch.Tensor, plugin: str) -> None:
        peak = processed.detach().amax(-1)  # (b, L)
        limit = HUGE_EMBEDDING_FACTOR * max(self.scale, 1e-12)
        parts = [torch.isfinite(self.raw_peak).all(), torch.isfinite(peak).all()]
        if self.embeds is not None:
            biggest = self.embeds.detach().abs().amax().float()
            parts = [torch.isfinite(biggest) & (biggest <= limit)] + parts
        if all(torch.stack(parts).tolist()):  # the step's one read for all value checks
            return
        if self.embeds is not None and not parts[0]:
            biggest = float(self.embeds.detach().abs().amax())
            if not math.isfinite(biggest):
                _fail(self.embed_plugin, "embed_state", "finite", "returned NaN or inf embeddings",
                      "guard divisions (add an epsilon)")
            _fail(self.embed_plugin, "embed_state", "sane size",
                  f"returned embeddings up to {biggest:.3g}, {biggest / max(self.scale, 1e-12):.3g} times the largest "
                  f"entry of the embedding table; the forward would overflow",
                  "build inputs from model.embedding_table() rows (convex mixtures keep their scale)")
        if not bool(torch.isfinite(self.raw_peak).all()):
            row, pos = _first(~torch.isfinite(self.raw_peak))
            raise ValueError(f"the model's forward returned non-finite logits (row {row} position {pos}: max "
                             f"{float(self.raw_peak[row, pos])}); the checkpoint is broken or its dtype overflows "
                             f"(try --dtype float32)")
        row, pos = _first(~torch.isfinite(peak))
        value = float(peak[row, pos])
        what = ("NaN logits" if math.isnan(value) else "a +inf logit" if value > 0
                else "a position whose every logit is -inf (no token left to choose)")
        _fail(plugin, "process_logits", "finite logits", f"returned {what} at running row {row} position {pos}",
              "ban tokens with -inf but leave each position at least one finite logit, force a token with a large "
              "finite value rather than +inf, and guard divisions")


def check_revoke(result, state: BlockState, plugin: str) -> torch.Tensor:
    hook = "revoke"
    _bool_positions(result, state, plugin, hook, "return a boolean mask over positions built from "
                                                 "state.token_positions")
    bad = result > state.token_positions
    if bad.any():
        row, pos = _first(bad)
        _fail(plugin, hook, "revoke only active token positions",
              f"revoked row {row} position {pos}, which is not an active token position of a running row",
              "AND the result with state.token_positions (= ~is_mask & active & ~done)")
    return result


def check_promote(result, state: BlockState, plugin: str) -> tuple[torch.Tensor, torch.Tensor | None, object]:
    """(positions, tokens or None, fallback) from a bool tensor or a `Promotion`."""
    hook = "promote"
    tokens, fallback = None, True
    if isinstance(result, Promotion):
        result, tokens, fallback = result.positions, result.tokens, result.fallback
    _bool_positions(result, state, plugin, hook,
                    "return a boolean mask over positions, e.g. `state.conf >= tau` combined with state.open_masks")
    bad = result > state.open_masks  # result & ~open_masks (bools)
    if bad.any():
        row, pos = _first(bad)
        _fail(plugin, hook, "promote only active open positions",
              f"promoted row {row} position {pos}, which is not an active open position of a running row",
              "AND the result with state.open_masks (= is_mask & active & ~done)")
    if tokens is not None:
        _token_ids(tokens, state, plugin, hook, " (Promotion.tokens)",
                   "return token ids, e.g. state.rng.multinomial(...) or state.top")
        chosen = tokens[result]
        if ((chosen < 0) | (chosen >= state.vocab_size)).any():
            _fail(plugin, hook, "ids in [0, vocab)", f"promoted ids outside [0, {state.vocab_size})",
                  "choose ids of the model's vocabulary")
        if state.mask_id is not None and (chosen == state.mask_id).any():
            _fail(plugin, hook, "no mask id promoted", f"promoted the mask id {state.mask_id}",
                  "a promoted position needs a real token; leave it open instead")
        tokens = tokens.long()
    if isinstance(fallback, torch.Tensor):
        _shape(fallback, (state.batch_size,), plugin, hook, "(B,) bool (Promotion.fallback)")
        if fallback.dtype != torch.bool:
            _fail(plugin, hook, "dtype", f"Promotion.fallback is {fallback.dtype}, expected torch.bool",
                  "pass True, False or a (B,) bool tensor")
    elif not isinstance(fallback, bool):
        _fail(plugin, hook, "type", f"Promotion.fallback is {type(fallback).__name__}",
              "pass True, False or a (B,) bool tensor")
    return result, tokens, fallback


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
    _token_ids(result, state, plugin, hook, "", "return state.ids / state.top or a long tensor built from them")
    rows = state.finishing
    ids = result[rows]
    if ((ids < 0) | (ids >= state.vocab_size)).any():
        _fail(plugin, hook, "ids in [0, vocab)",
              f"committed ids outside [0, {state.vocab_size}) (min {int(ids.min())}, max {int(ids.max())})",
              "commit token ids of the model's vocabulary (state.top holds the latest predictions)")
    # On an absorbing-state canvas a committed mask id is allowed (DMax leaves positions open at the cap
    # masked, and with the MASK logit kept a top may be MASK); the core counts them per sample (`unfilled`).
    if state.mask_id is not None and state.uniform and (ids == state.mask_id).any():
        _fail(plugin, hook, "no mask id on a uniform-state canvas",
              f"committed the mask id {state.mask_id}, which this canvas never feeds",
              "commit state.top (or state.ids) at open positions")
    inactive = ~state.active[rows]
    if (ids[inactive] != state.ids[rows][inactive]).any():
        _fail(plugin, hook, "inactive positions keep their ids",
              "changed a position that was not open at block start",
              "use torch.where(state.active, new_ids, state.ids)")
    return result.long()


# -- the state guard -------------------------------------------------------------------------------------

# Core-owned fields a plugin may read but never write or replace.
GUARDED = ("ids", "is_mask", "active", "top", "conf", "prev_top", "_probs", "_logits", "_shadow_logits",
           "_canvas_logits", "revoked", "promoted",
           "fallback", "waived", "converged", "finishing", "done", "steps", "rows", "sample_ids", "context",
           "context_valid")


class StateGuard:
    """Snapshots of the guarded state fields (identity and tensor `_version`), compared after a hook call.

    `snapshot()` costs one attribute read per field; the loop takes one before each hook call that a
    plugin answers and `check()` raises `PluginContractError` naming the plugin and the field it touched.
    """

    __slots__ = ("state", "_snap")

    def __init__(self, state: BlockState):
        self.state = state
        self._snap: list = []

    def snapshot(self) -> None:
        state = self.state
        self._snap = [(v, v._version) if isinstance(v := getattr(state, f), torch.Tensor) else (v, None)
                      for f in GUARDED]

    def check(self, plugin: str, hook: str) -> None:
        state = self.state
        for field, (value, version) in zip(GUARDED, self._snap):
            now = getattr(state, field)
            if now is not value or (version is not None and now._version != version):
                name = field.lstrip("_")
                what = "replaced" if now is not value else "wrote into"
                _fail(plugin, hook, "plugins write only their stash",
                      f"{what} state.{name}, which the core owns",
                      f"copy before changing (state.{name}.clone()), return your decision from the hook, and keep "
                      f"your own data in state.stash[KEY] (KEY = StashKey())")


# What `generate` puts into each `RowResult` (extras aside): what an observer may read but never change.
RESULT_FIELDS = ("ids", "nfe", "tokens", "seconds", "block_steps", "prompt_len", "nfe_total", "sample_id")
# Extras the core itself writes; observers add their own names beside them.
CORE_RESULT_EXTRAS = ("unfilled", "global_rng")


class ResultsGuard:
    """The `StateGuard` of `on_generation_end`: observers may add their own `extras` to the results, but
    changing what the core measured (ids, counts, the core's extras) or replacing a result would store another
    number than the one decoded, and a later plain run could be served it. Same interface as `StateGuard`."""

    __slots__ = ("results", "_snap")

    def __init__(self, results: list):
        self.results = results
        self._snap: list = []

    @staticmethod
    def _measured(r) -> tuple:
        return tuple(tuple(v) if isinstance(v := getattr(r, f), list) else v for f in RESULT_FIELDS) + tuple(
            r.extras.get(k) for k in CORE_RESULT_EXTRAS)

    def snapshot(self) -> None:
        self._snap = [(r, self._measured(r)) for r in self.results]

    def check(self, plugin: str, hook: str) -> None:
        if len(self.results) != len(self._snap):
            _fail(plugin, hook, "observers change only extras", f"changed the number of results from "
                  f"{len(self._snap)} to {len(self.results)}", "read the results; add your values to extras")
        for i, (r, (before, measured)) in enumerate(zip(self.results, self._snap)):
            if r is not before:
                _fail(plugin, hook, "observers change only extras", f"replaced results[{i}]",
                      "write results[i].extras['your_name'] = value instead")
            now = self._measured(r)
            if now != measured:
                field = next(f for f, a, b in zip(RESULT_FIELDS + CORE_RESULT_EXTRAS, now, measured) if a != b)
                _fail(plugin, hook, "observers change only extras",
                      f"changed results[{i}].{field if field in RESULT_FIELDS else 'extras[' + repr(field) + ']'}, "
                      f"which the core measured", "copy what you need and add your own values to "
                      "results[i].extras under your own names")
