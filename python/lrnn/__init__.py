"""lrnn: linear RNNs and state-space models for PyTorch, on fast C and CUDA kernels.

Levels, from the metal up:
  torch.ops.lrnn.*     registered operators (CPU and CUDA kernels, fake kernels, autograd)
  lrnn.functional      documented functions over the operators
  lrnn.reference       pure-PyTorch twins of every operator (slow, differentiable, for tests)
"""
from . import _library

_library.load()

from . import ops as _ops  # noqa: E402,F401  (registers fake kernels and autograd)
from . import functional, reference  # noqa: E402
from ._library import build_info  # noqa: E402
from .functional import linear_scan  # noqa: E402
from . import models, nn  # noqa: E402  (layers and stacked models)

__all__ = ["build_info", "functional", "reference", "linear_scan", "models", "nn"]
__version__ = "0.1.0"
