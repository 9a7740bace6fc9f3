"""Lightning callbacks: figures and writers a task adds for itself (``configure_callbacks``)."""

from research.callbacks.figures import ClassificationFigures
from research.callbacks.segmentation import SegmentationFigures, SegmentationWriter

__all__ = ["ClassificationFigures", "SegmentationFigures", "SegmentationWriter"]
