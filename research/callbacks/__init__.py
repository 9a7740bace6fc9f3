"""Lightning callbacks: figures and writers a task adds for itself (``configure_callbacks``), and the run state
``medlab`` keeps in every checkpoint."""

from research.callbacks.figures import ClassificationFigures
from research.callbacks.last_checkpoint import LastCheckpoint
from research.callbacks.run_state import RunState
from research.callbacks.segmentation import SegmentationFigures, SegmentationWriter

__all__ = ["ClassificationFigures", "LastCheckpoint", "RunState", "SegmentationFigures", "SegmentationWriter"]
