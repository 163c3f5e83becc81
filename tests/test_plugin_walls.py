"""What a plugin from a recent paper needs, each shown by a small plugin written against the documented contract:
choosing the token (with per-sample generators), reading the context and a stable sample id, pre-filled
positions, refine-only steps without the progress fallback, and per-sample extras in the results store.

The models are the scripted fakes of `workbench.authoring.properties` (consistency with the contract, not accuracy)."""

from __future__ import annotations

import torch

from workbench.results.evaluate import RunSpec, evaluate
from workbench.decoding.loop import generate
from workbench.models.tokenizer import build_char_tokenizer
from workbench.authoring.properties import MASK_ID, ScriptedDenoiser
from workbench.decoding.registry import hookimpl, make_manager
from workbench.decoding.state import FREE, DecodeConfig, Promotion
from workbench.results.store import ResultsStore

CONFIG = DecodeConfig(block_size=4, max_new_tokens=8)
PROMPTS = [[5, 6, 7], [8], [9, 10]]


def model(**kw):
    return ScriptedDenoiser(16, eos_bias=-50.0, scale=0.7, **kw)


class SampleFromTop2:
    """Promotes the leftmost open position with a token sampled from its two most likely tokens
    (a first-hitting / top-k sampler in miniature): not the argmax, drawn from the sample's generator."""

    needs_probs = True

    @hookimpl
    def promote(self, state):
        open_ = state.open_masks
        first = open_ & (open_.long().cumsum(-1) == 1)
        top2 = state.probs.topk(2, dim=-1)
        probs = torch.zeros_like(state.probs).scatter(-1, top2.indices, top2.values)
        return Promotion(positions=first, tokens=state.rng.multinomial(probs / probs.sum(-1, keepdim=True)))


def test_a_plugin_chooses_tokens_reproducibly_and_independently_of_the_batch():
    pm = lambda: make_manager("threshold", extra_plugins=[SampleFromTop2()])  # noqa: E731
    batch = generate(model(), PROMPTS, pm(), CONFIG, sample_ids=[10, 11, 12])
    again = generate(model(), PROMPTS, pm(), CONFIG, sample_ids=[10, 11, 12])
    assert [r.ids for r in batch] == [r.ids for r in again]
    for i, prompt in enumerate(PROMPTS):  # alone, with the same sample id: the same draws, the same decode
        assert generate(model(), [prompt], pm(), CONFIG, sample_ids=[10 + i])[0].ids == batch[i].ids
    greedy = generate(model(), PROMPTS, make_manager("threshold", params={"tau": 1.0}), CONFIG)
    assert [r.ids for r in batch] != [r.ids for r in greedy]  # the chosen tokens are not all argmaxes
    other_seed = generate(model(), PROMPTS, pm(), DecodeConfig(block_size=4, max_new_tokens=8, seed=1),
                          sample_ids=[10, 11, 12])
    assert [r.ids for r in other_seed] != [r.ids for r in batch]


def test_the_batch_stream_shares_one_generator():
    pm = lambda: make_manager("threshold", extra_plugins=[SampleFromTop2()])  # noqa: E731
    config = DecodeConfig(block_size=4, max_new_tokens=8, rng="batch")
    batch = generate(model(), PROMPTS, pm(), config)
    assert [r.ids for r in batch] == [r.ids for r in generate(model(), PROMPTS, pm(), config)]
    assert generate(model(), PROMPTS[:1], pm(), config)[0].ids == batch[0].ids  # row 0 draws first


def test_a_plugin_reads_the_context_and_the_sample_id():
    seen = {}

    class Context:
        @hookimpl
        def on_step_end(self, state):
            for i, sid in enumerate(state.sample_ids.tolist()):
                context = state.context[i][state.context_valid[i]].tolist()
                seen.setdefault((sid, state.block_index), context)

    results = generate(model(), PROMPTS, make_manager("hard", extra_plugins=[Context()]), CONFIG,
                       sample_ids=[7, 3, 5])
    for sid, prompt, result in zip([7, 3, 5], PROMPTS, results):
        assert seen[sid, 1] == prompt  # block 1 sees the prompt (padding dropped)
        assert seen[sid, 2] == prompt + result.ids[:4]  # block 2 also the committed block 1


def test_pre_filled_positions_are_kept_and_never_decoded():
    class Template:
        """Schema scaffolding: the third position of every block is given, per sample."""

        @hookimpl
        def fill_block(self, state):
            fixed = torch.full_like(state.ids, FREE)
            fixed[:, 2] = 3 + state.sample_ids  # a different given token per sample
            return fixed

    results = generate(model(), PROMPTS, make_manager("spd", extra_plugins=[Template()]), CONFIG,
                       sample_ids=[0, 1, 2])
    for sid, r in enumerate(results):
        assert r.ids[2] == r.ids[6] == 3 + sid


def test_refine_only_steps_opt_out_of_the_fallback_and_the_cap_still_ends_the_block():
    steps = []

    class RefineFirst:
        """Promotes nothing on the first two steps of a block (refine-only), then defers to the strategy."""

        @hookimpl
        def promote(self, state):
            if state.step <= 2:
                return Promotion(positions=torch.zeros_like(state.is_mask), fallback=False)
            return None

        @hookimpl
        def on_step_end(self, state):
            steps.append((state.step, int(state.promoted.sum()), int(state.fallback.sum()), state.waived.tolist()))

    config = DecodeConfig(block_size=4, max_new_tokens=4, max_forwards_per_block=3)
    result = generate(model(), [[5]], make_manager("threshold", params={"tau": 1.0}, extra_plugins=[RefineFirst()]),
                      config)[0]
    assert steps[0] == (1, 0, 0, [True]) and steps[1] == (2, 0, 0, [True])
    assert steps[2][2] >= 0 and steps[2][3] == [False]  # the strategy answers step 3; the fallback may act
    assert result.block_steps == [3] and MASK_ID not in result.ids  # the cap ended it; commit filled the rest


def test_the_fallback_is_told_apart_from_the_plugins_choice():
    seen = []

    class Nothing:
        @hookimpl
        def promote(self, state):
            return torch.zeros_like(state.is_mask)

        @hookimpl
        def on_step_end(self, state):
            seen.append((int(state.promoted.sum()), int(state.fallback.sum())))

    generate(model(), [[5]], make_manager("threshold", extra_plugins=[Nothing()]), CONFIG)
    assert seen and all(promoted == fallback == 1 for promoted, fallback in seen)


class StepsPerBlock:
    """An observer that writes a per-sample statistic into the results store, joined on the sample id."""

    @hookimpl
    def on_generation_end(self, results):
        for r in results:
            r.extras["stepsperblock_max"] = max(r.block_steps)
            r.extras["stepsperblock_sample"] = r.sample_id


def test_an_observer_writes_per_sample_extras_into_the_store(tmp_path):
    from workbench.tasks import load_task

    tokenizer = build_char_tokenizer()  # ids 0-2 are PAD, MASK, EOS as in the fake
    m = ScriptedDenoiser(len(tokenizer), eos_bias=-50.0)
    task = load_task("choice")
    examples = task.eval_split(6)
    manager = make_manager("threshold", extra_plugins=[StepsPerBlock()])
    spec = RunSpec(strategy="threshold", params={}, plugins=(), trainer=None, model="scripted", model_hash="x",
                   task="choice", decode=DecodeConfig(block_size=4, max_new_tokens=8))
    with ResultsStore(tmp_path / "r.db") as store:
        _, samples = evaluate(m, tokenizer, task, manager, spec, examples, store, batch_size=4)
    assert [s.extras["stepsperblock_sample"] for s in samples] == [ex.uid for ex in examples]
    assert all(1 <= s.extras["stepsperblock_max"] <= 4 for s in samples)
