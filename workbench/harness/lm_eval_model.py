"""The workbench as an lm-evaluation-harness model: `lm_eval --model workbench --model_args ...`.

lm-eval builds `WorkbenchLM(**model_args)` (its `create_from_arg_string`), then calls, with all requests of
the evaluation at once:

- `generate_until`: decoded by the workbench loop with the run's strategy and plugins, batched, each answer
  recorded in the results store and cut at its stop strings (`workbench.harness.generation`);
- `loglikelihood` (multiple-choice tasks) and `loglikelihood_rolling` (perplexity): the Monte-Carlo ELBO of
  masked diffusion (`workbench.harness.likelihood`), `mc_samples` samples per request, seeded per request.
  They decode nothing, so they are not recorded as samples; lm-eval's `--use_cache FILE` keeps them across
  an interruption (each value is written to that cache as soon as it is computed).

Prompts are encoded as lm-eval's HF model encodes them (`workbench.harness.prompts`: the tokenizer's own
special tokens, BOS for LLaDA's), rendered by the chat template under `chat_template=on`. The run's seed is the
model argument `seed`, else lm-eval's `--seed` (`HarnessSetup.run_seed`).

Model arguments: `workbench.harness.arguments`; a bad one stops the `lm_eval` command with one line and exit
code 2 (in-process callers get the `ModelArgumentError`). Registration: the `register_model` decorator below, the
`lm_eval.models` entry point (lm-eval releases that read it), and `workbench.harness.autoload` for the
`lm_eval` command of releases that do not.

From Python:

    import lm_eval
    from workbench.harness.lm_eval_model import WorkbenchLM
    lm = WorkbenchLM(trainer="oput", strategy="spd", tau=0.5, batch_size=64)
    results = lm_eval.simple_evaluate(model=lm, tasks=["gsm8k"])
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model

from workbench.decoding.limits import check_lengths, max_positions
from workbench.harness import likelihood, prompts
from workbench.harness.arguments import ModelArgumentError, setup_from_model_args
from workbench.harness.autoload import lm_eval_command_line
from workbench.harness.generation import GenRequest, generate_until
from workbench.models.tokenizer import decode

log = logging.getLogger(__name__)
DEFAULT_MAX_GEN_TOKS = 256  # lm-eval's default when a task sets none
# Generation settings the workbench decode honours; any other (top_p, top_k, ...) is reported and ignored.
_HONOURED = {"until", "max_gen_toks", "max_new_tokens", "max_tokens", "max_completion_tokens", "do_sample",
             "temperature"}


def normalise_gen_kwargs(gen_kwargs: dict) -> tuple[tuple[str, ...], int, float, list[str]]:
    """(stop strings, generation length, temperature, ignored setting names) of one request's settings.

    lm-eval's aliases for the length count in its own order of priority; `do_sample: false` means greedy.
    """
    until = gen_kwargs.get("until") or ()
    until = (until,) if isinstance(until, str) else tuple(until)
    length = next((gen_kwargs[k] for k in ("max_gen_toks", "max_new_tokens", "max_tokens", "max_completion_tokens")
                   if gen_kwargs.get(k) is not None), DEFAULT_MAX_GEN_TOKS)
    temperature = float(gen_kwargs.get("temperature") or 0.0)
    if gen_kwargs.get("do_sample") is False:
        temperature = 0.0
    return until, int(length), temperature, sorted(set(gen_kwargs) - _HONOURED)


def _usage_error(err: ValueError):
    """A user error: on lm-eval's command line one line on stderr and exit code 2; in-process, raised."""
    if not lm_eval_command_line():
        raise err
    print(f"lm_eval --model workbench: error: {err}", file=sys.stderr, flush=True)
    raise SystemExit(2) from None


@register_model("workbench")
class WorkbenchLM(TemplateLM):
    """An lm-eval model decoding with one workbench strategy; see the module docstring for who calls what."""

    def __init__(self, **model_args: Any) -> None:
        super().__init__()
        if "pretrained" in model_args:  # the HF model's name for the same thing
            model_args["model"] = model_args.pop("pretrained")
        try:
            self.setup = setup_from_model_args(model_args)
        except ModelArgumentError as err:
            _usage_error(err)
        self.model = self.setup.model
        self.tokenizer = self.setup.tokenizer
        self._warned: set[str] = set()
        self._seeds: set[int] = set()

    # -- what lm-eval reads ------------------------------------------------------------------------------

    @property
    def eot_token_id(self) -> int:
        return self.model.eos_id

    @property
    def prefix_token_id(self) -> int:
        """Context of a request with an empty one: BOS when the tokenizer has it (LLaDA), else EOS."""
        bos = getattr(self.tokenizer, "bos_token_id", None)
        return bos if bos is not None else self.model.eos_id

    @property
    def max_length(self) -> int:
        return max_positions(self.model)[0]

    @property
    def batch_size(self) -> int:
        return self.setup.args.batch_size

    @property
    def device(self):
        return self.model.embedding_table().device

    @property
    def tokenizer_name(self) -> str:
        """Fingerprint of the prompt format for lm-eval's request cache: the tokenizer's folder."""
        return str(getattr(self.tokenizer, "name_or_path", "") or self.setup.model_path).replace("/", "__")

    def get_model_info(self) -> dict:
        from workbench.decoding.registry import decision_providers

        s = self.setup
        return {"workbench_model": s.model_path, "workbench_trainer": s.trainer, "workbench_strategy": s.args.strategy,
                "workbench_params": s.params, "workbench_plugins": list(s.args.plugin),
                "workbench_decisions": decision_providers(s.manager), "workbench_precision": s.precision,
                "workbench_store": s.args.store, "workbench_chat_template": s.chat_template,
                "workbench_seed": s.user_seed, "workbench_mc_scheme": s.options.mc_scheme,
                "workbench_add_bos_token": s.options.add_bos_token}

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        """lm-eval's HF model's rule: the tokenizer's own special tokens unless `string` starts with BOS or the
        model argument `add_bos_token` says otherwise (`workbench.harness.prompts.encode_request`)."""
        return prompts.encode_request(self.tokenizer, string, add_special_tokens=add_special_tokens,
                                      add_bos_token=self.setup.options.add_bos_token)

    def tok_decode(self, tokens, skip_special_tokens: bool = True) -> str:
        return decode(self.tokenizer, list(tokens))

    def _check_lm_eval_chat_template(self) -> None:
        """Refuse `--apply_chat_template` where it cannot apply (one line and exit 2 on the command line)."""
        if self.setup.chat_template:
            _usage_error(ValueError("--apply_chat_template and the model argument chat_template=on would both render "
                                    "the chat template; use one of them"))
        if not getattr(self.tokenizer, "chat_template", None):
            _usage_error(ValueError(f"--apply_chat_template: the tokenizer of {self.setup.name} has no chat template; "
                                    f"run without --apply_chat_template (prompts are then plain text)"))

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        """The template lm-eval records (it asks before building any request under --apply_chat_template)."""
        if chat_template:
            self._check_lm_eval_chat_template()
        return super().chat_template(chat_template)

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The conversation in the tokenizer's chat template (lm-eval calls this under --apply_chat_template)."""
        self._check_lm_eval_chat_template()
        return self.tokenizer.apply_chat_template(chat_history, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt,
                                                  continue_final_message=not add_generation_prompt)

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context ids, continuation ids): lm-eval's split of the whole string's encoding; under
        `chat_template=on` the context is the rendered user turn (the ids `generate_until` decodes from) and the
        continuation follows the assistant turn's opening."""
        if not self.setup.chat_template:
            return super()._encode_pair(context, continuation)
        context_ids = prompts.prompt_ids(self.setup, context)
        rendered = prompts.render_chat(self.tokenizer, context)
        whole = self.tokenizer(rendered + continuation, add_special_tokens=False)["input_ids"]
        return context_ids, list(whole[len(context_ids):])

    def _seed(self) -> int:
        """The run's seed (`HarnessSetup.run_seed`), said once per value in the log."""
        seed = self.setup.run_seed()
        if seed not in self._seeds:
            self._seeds.add(seed)
            source = "the model argument seed" if self.setup.user_seed is not None else \
                "lm-eval's seed (--seed, its torch value), as no model argument seed= was given"
            log.info("workbench: random draws seeded with %d, %s", seed, source)
        return seed

    # -- requests ----------------------------------------------------------------------------------------

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        from tqdm import tqdm

        reqs, seen = [], {}
        for inst in requests:
            context, gen_kwargs = inst.args
            until, length, temperature, ignored = normalise_gen_kwargs(dict(gen_kwargs))
            for name in ignored:
                if name not in self._warned:
                    self._warned.add(name)
                    log.warning("workbench: generation setting %r is not used by diffusion decoding; ignored", name)
            ident = (inst.task_name, inst.doc_id)
            repeat = seen[ident] = seen.get(ident, -1) + 1  # lm-eval repeats a request by listing it again
            reqs.append(GenRequest(task=inst.task_name or "", doc_id=inst.doc_id, repeat=repeat, context=context,
                                   until=until, max_gen_toks=length, temperature=temperature, doc=inst.doc))
        bar = tqdm(total=len(reqs), disable=disable_tqdm or self.rank != 0, desc="workbench generate_until")
        answers = generate_until(self.setup, reqs, seed=self._seed(), on_batch=bar.update)
        bar.close()
        for inst, answer in zip(requests, answers):
            self.cache_hook.add_partial("generate_until", inst.args, answer)
        return answers

    def _elbo_block_size(self) -> int | None:
        return self.setup.block_size if self.model.block_causal else None

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        from tqdm import tqdm

        likelihood.require_masked_diffusion(self.model, self.setup.name, "loglikelihood")
        opts, block, seed = self.setup.options, self._elbo_block_size(), self._seed()
        out = []
        for (context, continuation), context_ids, continuation_ids in tqdm(
                requests, disable=disable_tqdm or self.rank != 0, desc="workbench loglikelihood (ELBO)"):
            check_lengths(self.model, [context_ids], len(continuation_ids), names=[f"request {context!r}"])
            value = likelihood.elbo(self.model, context_ids, continuation_ids, samples=opts.mc_samples,
                                    batch_size=opts.mc_batch_size, block_size=block, seed=seed,
                                    scheme=opts.mc_scheme)
            greedy = likelihood.is_greedy(self.model, context_ids, continuation_ids, block_size=block)
            out.append((value, greedy))
            if context is not None:
                self.cache_hook.add_partial("loglikelihood", (context, continuation), (value, greedy))
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """The ELBO of each whole string, after the prefix token (no windows: the string must fit the model).

        The string is encoded without special tokens: the prefix token (BOS when the tokenizer has one) is its
        context, so a BOS-adding tokenizer's encoding is context + continuation."""
        from tqdm import tqdm

        likelihood.require_masked_diffusion(self.model, self.setup.name, "loglikelihood_rolling")
        if self.setup.chat_template:
            raise ValueError("loglikelihood_rolling scores a text on its own, not a reply: the model argument "
                             "chat_template=on does not apply to it; run perplexity tasks without it")
        opts, block, seed = self.setup.options, self._elbo_block_size(), self._seed()
        out = []
        for inst in tqdm(requests, disable=disable_tqdm or self.rank != 0, desc="workbench loglikelihood_rolling"):
            (string,) = inst.args
            context, ids = [self.prefix_token_id], self.tok_encode(string, add_special_tokens=False)
            check_lengths(self.model, [context], len(ids), names=["loglikelihood_rolling request"])
            value = likelihood.elbo(self.model, context, ids, samples=opts.mc_samples,
                                    batch_size=opts.mc_batch_size, block_size=block, seed=seed,
                                    scheme=opts.mc_scheme)
            out.append(value)
            self.cache_hook.add_partial("loglikelihood_rolling", (string,), value)
        return out
