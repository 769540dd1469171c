"""lrnn: linear RNNs and state-space models for PyTorch, on fast C and CUDA kernels.

Levels, from the metal up:
  torch.ops.lrnn.*     registered operators (CPU and CUDA kernels, fake kernels, autograd)
  lrnn.functional      documented functions over the operators
  lrnn.reference       pure-PyTorch twins of every operator (slow, differentiable, for tests)
  lrnn.nn              layers: (B, L, H) -> (B, L, H) nn.Modules with step() for inference
  lrnn.models          ready sequence models stacked from layers chosen by name
"""
from . import _library

_library.load()

from . import ops as _ops  # noqa: E402,F401  (registers fake kernels and autograd)
from . import functional, reference  # noqa: E402
from ._library import build_info  # noqa: E402
from .functional import cauchy, event_scan, fft_conv, linear_scan, selective_scan, ssm_kernel  # noqa: E402
from .functional import mimo_selective_scan  # noqa: E402
from . import models, nn  # noqa: E402

__all__ = ["build_info", "functional", "reference", "nn", "models",
           "linear_scan", "selective_scan", "ssm_kernel", "cauchy", "fft_conv", "event_scan",
           "mimo_selective_scan"]
__version__ = "0.1.0"
