"""Built-in decoding strategies, one per module, each an attrs plugin class exported as `STRATEGY`.

They are registered exactly like third-party strategies (see `workbench.decoding.registry.BUILTIN_STRATEGIES`):
a module that exposes `STRATEGY`, a class whose fields are its hyperparameters and whose `main_threshold`
class attribute names the field that `--tau` sets.
"""
