"""lrnn.nn: sequence layers, each an nn.Module mapping (B, L, H) -> (B, L, H) with step() and
initial_state() for recurrent inference (conventions: notes/BRIEF.md "Layer conventions").

``LAYERS`` maps a layer's name to its class so that lrnn.models can build any of them by name;
each layer module adds itself here.
"""
from .centaurus import Centaurus
from .lru import LRU
from .s5 import S5

LAYERS: dict[str, type] = {"s5": S5, "lru": LRU, "centaurus": Centaurus}

__all__ = ["LAYERS", "Centaurus", "LRU", "S5"]
