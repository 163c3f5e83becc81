"""Run the shipped decoding-invariant checks against a plugin combined with each built-in strategy.

`workbench check-plugin FILE.py|NAME` and a plugin's own pytest suite both call `check_target` (or `check`
with plugin objects). For every (invariant, strategy) cell, hypothesis draws small random problems
(`workbench.authoring.properties.ScriptedDenoiser` / `OracleDenoiser` fakes, random prompts, block sizes, caps and
the strategy's main threshold), runs the invariant's check from `workbench.authoring.properties`, and on a failure
shrinks to a minimal failing example, kept with the error text (a contract error names plugin and rule).

Invariants (rows of the report):

- contract: every decision result has valid shapes, dtypes and ids (the core's `workbench.decoding.contract`), on a
  float32 model; an output holds the mask id only where the core reports it unfilled.
- progress: each step promotes on every row with open positions (unless the plugin opted out of the
  fallback for it); blocks finish within the cap; a token returns to open only through `revoke`; a row
  stops after the block with its EOS.
- contiguity: mask positions stay a contiguous suffix (prefix-style strategies: hard, spd).
- monotonicity: a promoted token never changes (threshold-style strategies: threshold, hierarchical).
- batch invariance: a batch decodes exactly as each row alone, greedy or sampled (per-sample generators).
- determinism: the same seed gives the same decode (greedy and sampled); prompts are never modified.
- oracle: with an oracle model every row reproduces its answer, and every block finishes within
  L + 1 forwards (the cap is raised, so a plugin that never lets a block converge is caught).

Contiguity and monotonicity are properties of a composition: each is decided by a few hooks (contiguity by
`promote` and `revoke`, monotonicity by `commit` and `revoke`). When the plugin implements one of them the
check runs where the plugin claims the property (`claims = ("contiguity",)` class attribute); otherwise it
runs where the base strategy has it (its own `claims`, else the built-in table `BUILTIN_CLAIMS`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import attrs
import pluggy
import torch
from hypothesis import HealthCheck, Phase, Verbosity, given, reject, settings
from hypothesis.errors import Unsatisfiable
from hypothesis import strategies as st

from workbench.authoring import properties as P
from workbench.decoding import registry
from workbench.decoding.contract import PluginContractError, PluginRuntimeError, UnsupportedSettings
from workbench.decoding.loop import generate
from workbench.decoding.registry import (
    PluginLoadError, implemented_hooks, load_plugin_file, make_manager,
)
from workbench.decoding.state import BlockState, DecodeConfig, Stash
from workbench.authoring.verdicts import BLOCKED, BUILTIN_NAMES, DEFAULT_EXAMPLES, FAIL, NA, PASS  # noqa: F401

FIRST_TOKEN = 3  # ids 0-2 are PAD, MASK, EOS in the fakes
CLAIMABLE = ("contiguity", "monotonicity")
# The invariants built-in strategies keep at their default parameters (a strategy may declare `claims`).
BUILTIN_CLAIMS: dict[str, tuple[str, ...]] = {
    "threshold": ("monotonicity",), "hierarchical": ("monotonicity",),
    "hard": ("contiguity",), "spd": ("contiguity",),
}
# The hooks whose answers decide a claimable invariant: a plugin implementing any of them must claim it.
DECIDING_HOOKS = {"contiguity": ("promote", "revoke"), "monotonicity": ("commit", "revoke")}



# -- problems --------------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Problem:
    """A small random decoding problem on the scripted fake model; `describe()` is copy-pasteable."""

    vocab: int
    seed: int
    scale: float
    eos_bias: float
    block_causal: bool
    prompts: tuple[tuple[int, ...], ...]
    block: int
    new: int
    cap: int | None
    tau: float
    temperature: float

    def model(self, dtype: torch.dtype = torch.float64) -> P.ScriptedDenoiser:
        return P.ScriptedDenoiser(self.vocab, seed=self.seed, scale=self.scale, eos_bias=self.eos_bias,
                                  block_causal=self.block_causal, dtype=dtype)

    def config(self) -> DecodeConfig:
        return DecodeConfig(block_size=self.block, max_new_tokens=self.new, max_forwards_per_block=self.cap)

    def describe(self) -> str:
        return (f"model = ScriptedDenoiser({self.vocab}, seed={self.seed}, scale={self.scale!r}, "
                f"eos_bias={self.eos_bias!r}, block_causal={self.block_causal})\n"
                f"prompts = {[list(p) for p in self.prompts]}\n"
                f"config = DecodeConfig(block_size={self.block}, max_new_tokens={self.new}, "
                f"max_forwards_per_block={self.cap})  (determinism: temperature={self.temperature})")


@attrs.frozen(kw_only=True)
class OracleProblem:
    """A problem on the oracle model: the answer is `sequence[prompt_len:]`, cut after its first EOS."""

    vocab: int
    sequence: tuple[int, ...]
    prompt_lens: tuple[int, ...]
    block_causal: bool
    block: int
    new: int
    tau: float

    def model(self) -> P.OracleDenoiser:
        return P.OracleDenoiser(list(self.sequence), self.vocab, block_causal=self.block_causal)

    def config(self, declares: bool = False) -> DecodeConfig:
        # Cap well above L + 1, so "finishes within L + 1 forwards" is the plugin's doing, not the cap's. A
        # fixed-schedule plugin (`forwards_per_block`) gets the cap it declares: its schedule is its bound.
        return DecodeConfig(block_size=self.block, max_new_tokens=self.new,
                            max_forwards_per_block=None if declares else 2 * self.block + 2)

    def describe(self) -> str:
        return (f"model = OracleDenoiser({list(self.sequence)}, {self.vocab}, block_causal={self.block_causal})\n"
                f"prompts = [model.sequence[:n].tolist() for n in {list(self.prompt_lens)}]\n"
                f"config = DecodeConfig(block_size={self.block}, max_new_tokens={self.new}, "
                f"max_forwards_per_block={2 * self.block + 2})")


@st.composite
def problems(draw) -> Problem:
    vocab = draw(st.integers(6, 20))
    block = draw(st.integers(1, 5))
    new = block * draw(st.integers(1, 3)) + draw(st.sampled_from([0, 0, 1]))  # sometimes a short last block
    token = st.integers(FIRST_TOKEN, vocab - 1)
    prompts = draw(st.lists(st.lists(token, min_size=1, max_size=5).map(tuple), min_size=1, max_size=3))
    return Problem(vocab=vocab, seed=draw(st.integers(0, 10_000)), scale=draw(st.sampled_from([0.5, 1.0, 3.0, 8.0])),
                   eos_bias=draw(st.sampled_from([-6.0, 0.0, 2.0])), block_causal=draw(st.booleans()),
                   prompts=tuple(prompts), block=block, new=new, cap=draw(st.none() | st.integers(1, 2 * block)),
                   tau=draw(st.sampled_from([0.0, 0.3, 0.5, 0.9, 1.0])),
                   temperature=draw(st.sampled_from([0.0, 0.7, 1.5])))


@st.composite
def oracle_problems(draw) -> OracleProblem:
    vocab = draw(st.integers(6, 16))
    block = draw(st.integers(1, 5))
    new = block * draw(st.integers(1, 3))
    sequence = draw(st.lists(st.integers(FIRST_TOKEN, vocab - 1) | st.just(P.EOS_ID), min_size=6 + new,
                             max_size=6 + new))
    lens = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    return OracleProblem(vocab=vocab, sequence=tuple(sequence), prompt_lens=tuple(lens),
                         block_causal=draw(st.booleans()), block=block, new=new,
                         tau=draw(st.sampled_from([0.0, 0.5, 0.9, 0.999])))


# -- invariants ------------------------------------------------------------------------------------------

MakeManager = Callable[[], pluggy.PluginManager]


def _run_contract(mm: MakeManager, pr: Problem) -> None:
    # float32 like a real model on a GPU or CPU run, so an embedding of another dtype fails here too
    model = pr.model(dtype=torch.float32)
    results = generate(model, [list(p) for p in pr.prompts], mm(), pr.config())
    for i, r in enumerate(results):
        bad = [t for t in r.ids if not 0 <= t < model.vocab_size]
        assert not bad, f"row {i} generated ids {bad} that are not tokens of the vocabulary"
    P.check_unfilled_reported(results, model.mask_id)


def _run_progress(mm: MakeManager, pr: Problem) -> None:
    trace = P.record(mm, pr.model(), [list(p) for p in pr.prompts], pr.config())
    P.check_progress(trace, pr.config())
    P.check_no_return_to_mask(trace)
    P.check_eos_stop(trace.results, pr.config())


def _run_contiguity(mm: MakeManager, pr: Problem) -> None:
    P.check_mask_suffix(P.record(mm, pr.model(), [list(p) for p in pr.prompts], pr.config()))


def _run_monotonicity(mm: MakeManager, pr: Problem) -> None:
    P.check_tokens_final(P.record(mm, pr.model(), [list(p) for p in pr.prompts], pr.config()))


def _run_batch(mm: MakeManager, pr: Problem) -> None:
    # greedy and sampled alike: each sample draws from its own generator
    config = attrs.evolve(pr.config(), temperature=pr.temperature, seed=pr.seed)
    P.check_batch_invariance(mm, pr.model(), [list(p) for p in pr.prompts], config)


def _run_determinism(mm: MakeManager, pr: Problem) -> None:
    config = attrs.evolve(pr.config(), temperature=pr.temperature, seed=pr.seed)
    P.check_determinism(mm, pr.model(), [list(p) for p in pr.prompts], config)
    P.check_prompt_unmodified(mm, pr.model(), [list(p) for p in pr.prompts], config)


def _run_oracle(mm: MakeManager, pr: OracleProblem) -> None:
    oracle = pr.model()
    prompts = [oracle.sequence[:n].tolist() for n in pr.prompt_lens]
    manager = mm()
    # A fixed-schedule sampler (ReMDM, LLaDA's steps) declares the forwards a block takes whatever the model
    # says: its bound is that schedule, any other plugin's L + 1.
    declared = [need for p in manager.get_plugins() if callable(getattr(p, "forwards_per_block", None))
                and (need := p.forwards_per_block(pr.block)) is not None]
    config = pr.config(declares=bool(declared))
    bound = max([config.block_size + 1, *declared])
    for n, r in zip(pr.prompt_lens, generate(oracle, prompts, manager, config)):
        assert r.ids == oracle.answer(n, config.max_new_tokens), \
            f"prompt length {n}: oracle answer {oracle.answer(n, config.max_new_tokens)}, decoded {r.ids}"
        assert all(s <= bound for s in r.block_steps), \
            f"prompt length {n}: forwards per block {r.block_steps} with a certain (oracle) model; a block " \
            f"should finish within {bound} (L + 1, or the schedule a plugin declares with forwards_per_block; " \
            f"the cap, {config.cap}, ended it: does converge ever say True?)"


@attrs.frozen
class Invariant:
    name: str
    summary: str
    run: Callable
    problems: Callable[[], st.SearchStrategy]


INVARIANTS: tuple[Invariant, ...] = (
    Invariant("contract", "valid shapes, dtypes and token ids of every decision", _run_contract, problems),
    Invariant("progress", ">= 1 promotion per step, blocks end within the cap, EOS stops a row", _run_progress,
              problems),
    Invariant("contiguity", "mask positions stay a contiguous suffix", _run_contiguity, problems),
    Invariant("monotonicity", "promoted tokens never change", _run_monotonicity, problems),
    Invariant("batch invariance", "a batch decodes exactly as each row alone", _run_batch, problems),
    Invariant("determinism", "same seed, same decode; prompts untouched", _run_determinism, problems),
    Invariant("oracle", "an oracle model is reproduced exactly, each block within L + 1 forwards", _run_oracle,
              oracle_problems),
)


# -- report ----------------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Cell:
    invariant: str
    strategy: str
    status: str  # PASS, FAIL, NA (does not apply), BLOCKED (not run: the contract failed)
    example: str | None = None
    error: str | None = None
    note: str | None = None


@attrs.frozen(kw_only=True)
class Report:
    target: str
    strategies: tuple[str, ...]
    cells: tuple[Cell, ...]
    providers: dict[str, dict[str, str]]  # strategy -> decision hook -> plugin that answers it
    examples: int
    warnings: tuple[str, ...] = ()  # e.g. hook-named methods without @hookimpl, which nothing calls

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list[Cell]:
        return [c for c in self.cells if c.status == FAIL]

    def cell(self, invariant: str, strategy: str) -> Cell:
        return next(c for c in self.cells if c.invariant == invariant and c.strategy == strategy)

    def failing_invariants(self) -> list[str]:
        return sorted({c.invariant for c in self.failures}, key=[i.name for i in INVARIANTS].index)

    def to_dict(self) -> dict:
        return {"target": self.target, "ok": self.ok, "examples": self.examples, "strategies": list(self.strategies),
                "providers": self.providers, "cells": [attrs.asdict(c) for c in self.cells],
                "warnings": list(self.warnings)}

    def text(self) -> str:
        """Plain-text report (for assertion messages)."""
        width = max(len(i.name) for i in INVARIANTS)
        lines = [f"{'invariant':<{width}}  " + "  ".join(f"{s:<12}" for s in self.strategies)]
        for inv in INVARIANTS:
            lines.append(f"{inv.name:<{width}}  " + "  ".join(
                f"{self.cell(inv.name, s).status:<12}" for s in self.strategies))
        for c in self.failures:
            lines += ["", f"FAIL {c.invariant} x {c.strategy}", "minimal failing example:", c.example or "?",
                      "error:", c.error or "?"]
        return "\n".join(lines)


# -- running ---------------------------------------------------------------------------------------------


def _manager_factory(strategy: str, params: dict, plugins: Sequence[tuple[str, object]]) -> MakeManager:
    def make() -> pluggy.PluginManager:
        return make_manager(strategy, params=params, named_plugins=plugins)
    return make


def _claims(obj: object) -> tuple[str, ...]:
    claims = tuple(getattr(obj, "claims", ()) or ())
    unknown = sorted(set(claims) - set(CLAIMABLE))
    if unknown:
        raise PluginLoadError(f"{type(obj).__name__}.claims names unknown invariants {unknown}; "
                              f"claimable: {', '.join(CLAIMABLE)}")
    return claims


def applies(invariant: str, strategy: str, plugins: Sequence[tuple[str, object]]) -> tuple[bool, str]:
    """Whether a claimable invariant is checked for this composition, and why (see module docstring)."""
    if invariant not in CLAIMABLE:
        return True, "always"
    hooks = DECIDING_HOOKS[invariant]
    deciders = [(p, h) for _, p in plugins for h in hooks if h in implemented_hooks(p)]
    if deciders:
        decider, hook = deciders[-1]  # the last registered answers first
        return invariant in _claims(decider), f"the plugin answers {hook} and " + (
            "claims it" if invariant in _claims(decider) else "does not claim it")
    hook = hooks[0]
    base = registry._build_strategy(strategy, registry._load_strategy_module(strategy), {})
    base_claims = _claims(base) if hasattr(base, "claims") else BUILTIN_CLAIMS.get(strategy, ())
    return invariant in base_claims, f"{strategy} answers {hook}" + (
        "" if invariant in base_claims else f" and does not keep {invariant}")


def _error_text(err: BaseException) -> str:
    if isinstance(err, (AssertionError, PluginContractError, PluginRuntimeError)):
        return f"{type(err).__name__}: {err}"  # these already say which plugin, hook and file:line
    tb = err.__traceback__
    where = ""
    while tb is not None:  # the innermost frame is where the plugin (or the core) raised
        where = f" (at {Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno} in {tb.tb_frame.f_code.co_name})"
        tb = tb.tb_next
    return f"{type(err).__name__}: {err}{where}"


def _settings_refusal(err: BaseException | None) -> str | None:
    """The message of an `UnsupportedSettings` behind `err` (raised by a hook, wrapped by the core), else None."""
    while err is not None:
        if isinstance(err, PluginRuntimeError):
            err = err.error
        if isinstance(err, UnsupportedSettings):
            return str(err)
        err = err.__cause__ or err.__context__
    return None


def _run_cell(inv: Invariant, strategy: str, plugins, examples: int) -> Cell:
    try:
        tau_param = registry.strategy_threshold_param(strategy)
    except registry.StrategyParamError:
        tau_param = None
    last: list = []
    refused: list[str] = []

    def body(problem):
        params = {tau_param: problem.tau} if tau_param else {}
        try:
            inv.run(_manager_factory(strategy, params, plugins), problem)
        except Exception as err:
            refusal = _settings_refusal(err)
            if refusal is not None:  # the plugin cannot run these settings, and says so: not this invariant's case
                refused[:] = [refusal]
                reject()
            last[:] = [problem, params, err]
            raise

    test = settings(max_examples=examples, database=None, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet,
                    phases=(Phase.explicit, Phase.generate, Phase.shrink),
                    report_multiple_bugs=False)(given(inv.problems())(body))
    try:
        test()
    except Unsatisfiable:
        return Cell(invariant=inv.name, strategy=strategy, status=NA,
                    note=f"the plugin refuses the settings of every problem drawn ({refused[0] if refused else '?'})")
    except Exception as err:  # the last failing call hypothesis ran is its shrunk, minimal example
        if not last:
            return Cell(invariant=inv.name, strategy=strategy, status=FAIL, error=_error_text(err))
        problem, params, failure = last
        example = problem.describe() + f"\nstrategy = {strategy} with params {params}"
        return Cell(invariant=inv.name, strategy=strategy, status=FAIL, example=example, error=_error_text(failure))
    return Cell(invariant=inv.name, strategy=strategy, status=PASS)


def check(plugins: Iterable[object] | Iterable[tuple[str, object]], *, target: str = "plugin",
          strategies: Sequence[str] | None = None, examples: int = DEFAULT_EXAMPLES,
          on_cell: Callable[[Cell], None] | None = None) -> Report:
    """Check plugin objects (or (name, object) pairs) combined with each strategy; returns the report."""
    named = [p if isinstance(p, tuple) else (getattr(p, "name", None) or type(p).__name__, p) for p in plugins]
    strategies = tuple(strategies or BUILTIN_NAMES)
    # The fakes' tensors are tiny: intra-op threads only add hand-off latency (~100x on a busy machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            return _check(named, target, strategies, examples, on_cell)
    finally:
        torch.set_num_threads(threads)


def _check(named, target, strategies, examples, on_cell) -> Report:
    cells, providers = [], {}
    for strategy in strategies:
        pm = _manager_factory(strategy, {}, named)()
        providers[strategy] = registry.decision_providers(pm)
        contract_ok = True
        for inv in INVARIANTS:
            run, why = applies(inv.name, strategy, named)
            if not run:
                cell = Cell(invariant=inv.name, strategy=strategy, status=NA, note=why)
            elif not contract_ok:
                cell = Cell(invariant=inv.name, strategy=strategy, status=BLOCKED, note="the contract check failed")
            else:
                cell = _run_cell(inv, strategy, named, examples)
                contract_ok = contract_ok and not (inv.name == "contract" and cell.status == FAIL)
            cells.append(cell)
            if on_cell:
                on_cell(cell)
    position = {(inv.name, s): i for i, (inv, s) in enumerate((inv, s) for inv in INVARIANTS for s in strategies)}
    ordered = sorted(cells, key=lambda c: position[c.invariant, c.strategy])
    return Report(target=target, strategies=strategies, cells=tuple(ordered), providers=providers, examples=examples)


def load_target(target: str | Path) -> list[tuple[str, object]]:
    """(name, plugin) pairs of a plugin file (`FILE.py`) or of an installed strategy (`NAME`)."""
    path = Path(target)
    if str(target).endswith(".py") or path.is_file():
        return load_plugin_file(path)
    name = str(target)
    try:
        module = registry._load_strategy_module(name)
    except registry.UnknownStrategyError as err:
        if (path / f"{path.name}.py").is_file():  # a `new-plugin --package` folder that is not installed
            raise registry.UnknownStrategyError(f"{err}; to check the package's file: "
                                                f"workbench check-plugin {path / (path.name + '.py')}") from None
        raise
    plugin = registry._build_strategy(name, module, {})
    return [(name, plugin)]


def check_target(target: str | Path, **kwargs) -> Report:
    """`check` on a plugin file or installed strategy name (what `workbench check-plugin` runs); warnings
    raised while loading it (a hook-named method without @hookimpl...) are kept in `Report.warnings`."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plugins = load_target(target)
    report = check(plugins, target=str(target), **kwargs)
    return attrs.evolve(report, warnings=tuple(str(w.message) for w in caught))


# -- hand-made states for unit tests of a rule -----------------------------------------------------------


def hand_state(conf=None, *, is_mask=None, top=None, probs=None, prev_top=None, vocab_size: int | None = None,
               step: int = 1) -> BlockState:
    """A block state built from nested lists, for testing a rule on hand-made confidences.

    conf: (B, L); is_mask: (B, L) bool, default all True; top: (B, L), default token 7 (or argmax of
    probs); probs: (B, L, V) probabilities (conf then defaults to their max); prev_top: (B, L).
    `prev_probs` is not a state field: it is returned unchanged as `state.stash`-free convenience for
    rules that keep their own history (tests pass it to the plugin themselves).
    """
    if probs is not None:
        probs = torch.as_tensor(probs, dtype=torch.float32)
        vocab_size = vocab_size or probs.shape[-1]
        if conf is None:
            conf = probs.max(-1).values
        if top is None:
            top = probs.argmax(-1)
    conf = torch.as_tensor(conf, dtype=torch.float32)
    b, length = conf.shape
    state = BlockState.start_block(block_index=1, start=0, rows=torch.arange(b), length=length,
                                   mask_id=P.MASK_ID, vocab_size=vocab_size or 16,
                                   config=DecodeConfig(block_size=length), stash=Stash())
    state.conf = conf
    state.top = torch.full((b, length), 7) if top is None else torch.as_tensor(top, dtype=torch.long)
    state.probs = probs
    state.step = step
    if prev_top is not None:
        state.prev_top = torch.as_tensor(prev_top, dtype=torch.long)
    if is_mask is not None:
        state.is_mask = torch.as_tensor(is_mask, dtype=torch.bool)
        state.ids = torch.where(state.is_mask, P.MASK_ID, state.top)
    return state


def hook_doc(hook: str) -> str:
    """The hook's specification docstring (for templates and help texts)."""
    from workbench.decoding import hookspecs

    return inspect.getdoc(getattr(hookspecs, hook)) or ""
