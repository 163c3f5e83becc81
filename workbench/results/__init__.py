"""Results: decoding a task's samples into the results store, and reading them back as numbers.

Owns `evaluate` (decode a split, record every sample), the SQLite store (`store`), the run key
(`provenance`), one process per run (`runlock`), metrics and statistics (`metrics`), the ablation grid
(`grid`), plots (`plots`) and model cards (`card`).

May import: `workbench.decoding`, `workbench.models`, `workbench.tasks`, `workbench.runtime`.
Never imports training or the command line.
"""
