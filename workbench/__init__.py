"""dLLM decoding workbench: one block-decoding loop, every strategy a pluggy plugin."""

__version__ = "0.2.0"
