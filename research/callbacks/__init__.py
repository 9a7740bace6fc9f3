"""Lightning callbacks: figures and writers a task adds for itself (``configure_callbacks``), and the run state
``medlab`` keeps in every checkpoint."""

from research.callbacks.checkpoints import LastCheckpoint, RunCheckpoint
from research.callbacks.explanations import ExplanationPanel
from research.callbacks.figures import ClassificationFigures, FeatureFigures, ForecastFigures
from research.callbacks.predictions import ClassPredictionWriter, TestResultsWriter
from research.callbacks.registration import RegistrationFigures
from research.callbacks.requeue import SlurmRequeue
from research.callbacks.run_state import RunState
from research.callbacks.segmentation import SegmentationFigures

__all__ = [
    "ClassificationFigures",
    "ClassPredictionWriter",
    "ExplanationPanel",
    "FeatureFigures",
    "ForecastFigures",
    "LastCheckpoint",
    "RegistrationFigures",
    "RunCheckpoint",
    "RunState",
    "SegmentationFigures",
    "SlurmRequeue",
    "TestResultsWriter",
]
