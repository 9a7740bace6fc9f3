"""Lightning callbacks: figures, guards."""

from research.callbacks.figures import ClassificationFigures

__all__ = ["ClassificationFigures"]
