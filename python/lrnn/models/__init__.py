"""lrnn.models: complete networks built from lrnn.nn layers."""
from .event_classifier import EventClassifier

__all__ = ["EventClassifier"]
