"""lrnn.nn: layers (one file per model) built on the torch.ops.lrnn operators."""
from .mamba import STREAM, Mamba  # noqa: F401
