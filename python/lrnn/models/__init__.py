"""lrnn.models: ready sequence models stacked from lrnn.nn layers chosen by name."""
from .event_classifier import EventClassifier
from .sequence import Block, SequenceBackbone, SequenceLM, SequenceModel, make_layer, param_groups

__all__ = ["Block", "EventClassifier", "SequenceBackbone", "SequenceLM", "SequenceModel", "make_layer",
           "param_groups"]
