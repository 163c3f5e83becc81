"""How the lm-eval model turns request strings into ids, and what identifies a run's prompts.

Called by `WorkbenchLM.tok_encode` (lm-eval's `loglikelihood` contexts and continuations) and by
`workbench.harness.generation` (`generate_until` contexts); needs no lm-eval itself.

Special tokens follow lm-eval's HF model (`lm_eval/models/huggingface.py`, `tok_encode` / `tok_batch_encode`),
which LLaDA's `eval_llada.py` agrees with (it calls `tokenizer(text)`):
- by default a string is encoded with the tokenizer's own special tokens (its `add_special_tokens` default):
  LLaDA's and LLaMA's tokenizers put BOS first, Qwen2's / Dream's add nothing, and so does the workbench's
  character tokenizer (so the shipped models see the same ids as before);
- a string that already starts with the BOS text (a chat template wrote it) gets none added;
- the model argument `add_bos_token` (HF's argument of that name) overrides the default: true always starts
  with BOS, false adds no special token;
- a caller that says `add_special_tokens` explicitly gets exactly that (lm-eval asks for none for a
  continuation scored after an empty context).

`workbench run` encodes prompts without special tokens (`workbench.models.tokenizer.encode`); lm-eval runs are
keyed on the ids they decode (`prompt_identity`), so the two conventions never share stored samples by accident.

With the model argument `chat_template=on` a prompt is rendered as one user turn of the tokenizer's chat
template, exactly as `workbench run --chat-template on` renders it (`encode_prompt`: the template writes its
own special tokens, none are added).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from workbench.models.tokenizer import encode_prompt


def bos_text(tokenizer) -> str | None:
    """The BOS token as text (what a string rendered by a chat template starts with), or None."""
    bos = getattr(tokenizer, "bos_token", None)
    return bos if isinstance(bos, str) and bos else None


def encode_request(tokenizer, text: str, *, add_special_tokens: bool | None = None,
                   add_bos_token: bool | None = None) -> list[int]:
    """`text`'s ids by lm-eval's HF model's rule (module docstring)."""
    special = add_special_tokens
    if special is None:
        special = add_bos_token
        bos = bos_text(tokenizer)
        if bos is not None and text.startswith(bos):
            special = False  # already written: never twice
    ids = tokenizer(text, **({} if special is None else {"add_special_tokens": special}))["input_ids"]
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if add_special_tokens is None and special and add_bos_token and bos_id is not None and ids[:1] != [bos_id]:
        ids = [bos_id, *ids]  # add_bos_token=true on a tokenizer whose own default adds no BOS
    return list(ids)


def render_chat(tokenizer, text: str) -> str:
    """`text` as one user turn of the tokenizer's chat template, followed by the assistant turn's opening."""
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                         tokenize=False)


def prompt_ids(setup, text: str) -> list[int]:
    """The ids a `generate_until` context (or a `loglikelihood` context) is decoded from, for a
    `workbench.harness.arguments.HarnessSetup`: rendered by the chat template (`chat_template=on`), else
    encoded by lm-eval's rule."""
    if setup.chat_template:
        return encode_prompt(setup.tokenizer, text, True)
    return encode_request(setup.tokenizer, text, add_bos_token=setup.options.add_bos_token)


def prompt_identity(task: str, probe_uid: int, probe_text: str, probe_ids: Sequence[int]) -> dict:
    """The `task_content` of an lm-eval run (`RunSpec.task_content`): the task's name and a fingerprint of one
    of its prompts, the one with the lowest sample id (document 0 under lm-eval's `--limit`), text and ids.

    lm-eval tells a model neither the few-shot count, the few-shot seed, the system instruction nor whether it
    rendered a chat template; each of them changes every prompt, so every prompt's fingerprint would do, and
    the lowest id's is the one a shorter or longer `--limit` of the same evaluation shares (so samples are
    reused across limits and after an interruption)."""
    text = json.dumps([probe_uid, probe_text, list(map(int, probe_ids))], ensure_ascii=False)
    return {"name": task, "prompts": {"probe": probe_uid,
                                      "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}}


__all__ = ["bos_text", "encode_request", "prompt_identity", "prompt_ids", "render_chat"]
