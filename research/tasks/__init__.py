"""LightningModules, one per task."""

from research.tasks.classification import ImageClassifier
from research.tasks.segmentation import Segmenter

__all__ = ["ImageClassifier", "Segmenter"]
