"""LightningModules, one per task."""

from research.tasks.classification import ImageClassifier
from research.tasks.segmentation import Segmenter
from research.tasks.sequence import SequenceClassifier

__all__ = ["ImageClassifier", "Segmenter", "SequenceClassifier"]
