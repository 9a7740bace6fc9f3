"""LightningModules, one per task."""

from research.tasks.classification import ImageClassifier

__all__ = ["ImageClassifier"]
