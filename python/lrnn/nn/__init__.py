"""lrnn.nn: sequence layers, each an nn.Module mapping (B, L, H) -> (B, L, H) with step() and
initial_state() for recurrent inference (conventions: notes/BRIEF.md "Layer conventions").
Event layers take the time gaps dt (B, L) after x."""
from .event_ssm import EventSSM
from .s7 import S7

__all__ = ["EventSSM", "S7"]
