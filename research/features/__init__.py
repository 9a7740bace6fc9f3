"""Classical image features (scikit-image descriptors, cached) and the scikit-learn pipelines that classify them."""

from research.features.descriptors import DESCRIPTORS, FeatureSettings, describe
from research.features.extraction import FeatureExtractor

__all__ = ["DESCRIPTORS", "FeatureExtractor", "FeatureSettings", "describe"]
