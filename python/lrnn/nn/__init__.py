"""lrnn.nn: sequence layers, each an nn.Module mapping (B, L, H) -> (B, L, H) with step() and
initial_state() for recurrent inference.

Every layer follows one interface: ``forward(x, state=None, *, return_state=False)`` continues from
``state`` and can return the final state; ``step(x_t, state) -> (y_t, state)`` is O(1) per token;
``initial_state(batch_size)``. Event layers take the time gaps ``dt`` (B, L) after ``x``.

``LAYERS`` maps a layer's name to its class so that lrnn.models can build any of them by name.
"""
from .centaurus import Centaurus
from .event_ssm import EventSSM
from .lru import LRU
from .mamba import STREAM, Mamba
from .s4 import S4, S4D
from .s5 import S5
from .s7 import S7

LAYERS: dict[str, type] = {"s4": S4, "s4d": S4D, "s5": S5, "lru": LRU, "centaurus": Centaurus,
                           "event_ssm": EventSSM, "s7": S7,
                           "mamba": Mamba, "stream": STREAM}

__all__ = ["LAYERS", "Centaurus", "EventSSM", "LRU", "Mamba", "S4", "S4D", "S5", "S7", "STREAM"]
