"""The names that tie plugins to the hook specifications: pluggy's markers for the project `workbench` and
the hook names by kind. The bottom of the decoding package: it imports nothing of the workbench, so the
specs (`hookspecs`), the core's defaults (`defaults`) and the registry can all use it.
"""

from __future__ import annotations

import pluggy

PROJECT = "workbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

DECISION_HOOKS = ("fill_block", "guidance", "embed_state", "process_logits", "revoke", "promote", "converge",
                  "commit")
# Decision hooks whose "no answer" (every implementation returned None) means "nothing to do this time".
OPTIONAL_DECISIONS = ("fill_block", "guidance", "revoke")
# Optional decision hooks the core has no implementation of: a run's `decisions` list names them only when a
# plugin implements one (so adding such a hook changes no existing run's key).
OPT_IN_DECISIONS = ("guidance",)
OBSERVER_HOOKS = ("on_step_end", "on_block_end", "on_generation_end")
ALL_HOOKS = DECISION_HOOKS + OBSERVER_HOOKS
