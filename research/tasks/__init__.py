"""LightningModules, one per task, on the ``Task`` base."""

from research.tasks.base import Task
from research.tasks.classification import FusionClassifier, ImageClassifier
from research.tasks.features import FeatureClassifier
from research.tasks.registration import ClassicalRegistration, Registration
from research.tasks.segmentation import Segmenter
from research.tasks.sequence import SequenceClassifier

__all__ = [
    "ClassicalRegistration",
    "FeatureClassifier",
    "FusionClassifier",
    "ImageClassifier",
    "Registration",
    "Segmenter",
    "SequenceClassifier",
    "Task",
]
