"""Training: the one training loop (`train`) and self-distillation data (`distill`).

The objectives themselves are plugins-like modules of the top-level `trainers` package; this package runs
them: optimiser, schedule, checkpoints, resumption, model cards.

May import: `trainers`, `workbench.results` (model cards, the run key of distilled data),
`workbench.decoding`, `workbench.models`, `workbench.tasks`, `workbench.runtime`.
"""
