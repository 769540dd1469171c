"""Fake (meta) kernels and autograd formulas for every torch.ops.lrnn operator, one module per op.

Importing this package registers them; the operators themselves are defined in C++ (ops/library.cpp).
"""
from . import linear_scan  # noqa: F401
from . import lti_kernels  # noqa: F401
from . import selective_scan  # noqa: F401
from . import event_scan  # noqa: F401
from . import mimo_selective_scan  # noqa: F401
