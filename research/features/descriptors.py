"""Hand-made image descriptors from scikit-image: what a classical pipeline classifies instead of pixels.

Each descriptor maps one image (2D ``(H, W)`` or 3D ``(D, H, W)``, float) to named numbers. Intensities are first
brought to [0, 1] over a fixed ``intensity_range`` (the same for every image, so first-order statistics stay
comparable between images); texture descriptors then quantise that range into ``levels`` grey levels.
"""

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

import numpy as np
from scipy import stats
from skimage import feature, filters, measure

Descriptor = Literal["first_order", "edges", "glcm", "lbp", "shape", "hog"]
DESCRIPTORS: tuple[Descriptor, ...] = get_args(Descriptor)
PLANAR_ONLY = {"glcm", "lbp", "hog"}
"""Descriptors scikit-image defines for 2D images only; a 3D volume gets the others."""

GLCM_PROPERTIES = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation")
ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)


@dataclass(frozen=True)
class FeatureSettings:
    """Which descriptors, and their settings (part of the feature cache's key).

    Args:
        descriptors: any of ``first_order`` (mean, spread, percentiles, skewness, kurtosis, histogram entropy),
            ``edges`` (Sobel magnitude, Canny edge density, gradient-orientation histogram), ``glcm`` (grey-level
            co-occurrence properties per distance: mean and range over four angles), ``lbp`` (uniform local binary
            pattern histogram), ``shape`` (region properties of the largest region above Otsu's threshold: area,
            perimeter, eccentricity, solidity, extent, axes, Hu moments), ``hog`` (histogram of oriented gradients).
            3D volumes get the descriptors scikit-image defines in 3D (first order, Sobel edges, shape).
        intensity_range: the input values mapped to 0 and 1 (medlab's 2D DataModules give [-1, 1]).
        levels: grey levels of the co-occurrence matrix.
        glcm_distances: pixel offsets of the co-occurrence matrix.
        lbp_points: neighbours of the local binary pattern (radius ``lbp_points / 8``).
        hog_cell: HOG cell side in pixels (blocks of 2 x 2 cells, 9 orientations).
        histogram_bins: bins of the first-order and orientation histograms.
    """

    descriptors: list[Descriptor] = field(default_factory=lambda: list(DESCRIPTORS))
    intensity_range: tuple[float, float] = (-1.0, 1.0)
    levels: int = 32
    glcm_distances: list[int] = field(default_factory=lambda: [1, 2, 4])
    lbp_points: int = 8
    hog_cell: int = 7
    histogram_bins: int = 8

    def __post_init__(self) -> None:
        unknown = [d for d in self.descriptors if d not in DESCRIPTORS]
        if unknown:
            raise ValueError(f"features.descriptors: {unknown} unknown; expected some of {', '.join(DESCRIPTORS)}")
        low, high = self.intensity_range
        if not high > low:
            raise ValueError(f"features.intensity_range: expected (low, high) with high > low, got {low, high}")

    def as_dict(self) -> dict:
        return asdict(self)


def first_order(image: np.ndarray, settings: FeatureSettings) -> dict[str, float]:
    values = image.ravel()
    histogram = np.histogram(values, bins=settings.histogram_bins, range=(0, 1))[0] / values.size
    named = {"mean": values.mean(), "std": values.std(), "min": values.min(), "max": values.max()}
    quantiles = (10, 25, 50, 75, 90)
    named.update({f"p{q}": v for q, v in zip(quantiles, np.percentile(values, quantiles), strict=True)})
    constant = values.std() < 1e-8  # skewness and kurtosis of a flat image are undefined: call them 0
    named["skewness"] = 0.0 if constant else stats.skew(values)
    named["kurtosis"] = 0.0 if constant else stats.kurtosis(values)
    named["entropy"] = -np.sum(histogram[histogram > 0] * np.log2(histogram[histogram > 0]))
    named["energy"] = np.mean(values**2)
    return named


def edges(image: np.ndarray, settings: FeatureSettings) -> dict[str, float]:
    magnitude = filters.sobel(image)
    named = {"sobel_mean": magnitude.mean(), "sobel_std": magnitude.std(), "sobel_p90": np.percentile(magnitude, 90)}
    if image.ndim == 2:
        named["canny_density"] = feature.canny(image, sigma=1.0).mean()
        angle = np.arctan2(filters.sobel_v(image), filters.sobel_h(image)) % np.pi  # orientation, not direction
        weights = magnitude / (magnitude.sum() + 1e-12)
        histogram = np.histogram(angle, bins=settings.histogram_bins, range=(0, np.pi), weights=weights)[0]
        named.update({f"orientation_{i}": v for i, v in enumerate(histogram)})
    return named


def quantised(image: np.ndarray, levels: int) -> np.ndarray:
    return np.minimum((image * levels).astype(np.uint8), levels - 1)


def glcm(image: np.ndarray, settings: FeatureSettings) -> dict[str, float]:
    matrix = feature.graycomatrix(quantised(image, settings.levels), settings.glcm_distances, ANGLES,
                                  levels=settings.levels, symmetric=True, normed=True)  # fmt: skip
    named = {}
    for prop in GLCM_PROPERTIES:
        values = feature.graycoprops(matrix, prop)  # (distances, angles)
        values = np.nan_to_num(values, nan=1.0)  # correlation of a constant region is undefined: perfectly correlated
        for distance, row in zip(settings.glcm_distances, values, strict=True):
            named[f"{prop}_d{distance}_mean"] = row.mean()
            named[f"{prop}_d{distance}_range"] = row.max() - row.min()
    return named


def lbp(image: np.ndarray, settings: FeatureSettings) -> dict[str, float]:
    points = settings.lbp_points
    codes = feature.local_binary_pattern(quantised(image, 256), points, points / 8, method="uniform")
    histogram = np.bincount(codes.astype(np.int64).ravel(), minlength=points + 2) / codes.size
    return {f"bin_{i}": v for i, v in enumerate(histogram)}


def shape(image: np.ndarray, settings: FeatureSettings) -> dict[str, float]:
    names = ["area", "extent", "solidity", "axis_major", "axis_minor", "threshold"]
    if image.ndim == 2:
        names += ["perimeter", "eccentricity", *[f"hu_{i}" for i in range(7)]]
    if image.std() < 1e-8:
        return dict.fromkeys(names, 0.0)
    threshold = filters.threshold_otsu(image)
    labels = measure.label(image > threshold)
    regions = measure.regionprops(labels)
    if not regions:
        return dict.fromkeys(names, 0.0)
    region = max(regions, key=lambda r: r.area)
    size = image.size
    named = {"area": region.area / size, "extent": region.extent, "solidity": region.solidity,
             "axis_major": region.axis_major_length / max(image.shape), "threshold": threshold,
             "axis_minor": region.axis_minor_length / max(image.shape)}  # fmt: skip
    if image.ndim == 2:
        named["perimeter"] = region.perimeter / max(image.shape)
        named["eccentricity"] = region.eccentricity
        hu = region.moments_hu
        named.update({f"hu_{i}": -np.sign(v) * np.log10(abs(v) + 1e-12) for i, v in enumerate(hu)})  # log scale
    return {name: named[name] for name in names}


def hog(image: np.ndarray, settings: FeatureSettings) -> dict[str, float]:
    cell = settings.hog_cell
    values = feature.hog(image, orientations=9, pixels_per_cell=(cell, cell), cells_per_block=(2, 2),
                         feature_vector=True)  # fmt: skip
    return {f"{i}": v for i, v in enumerate(values)}


EXTRACTORS: dict[Descriptor, Callable[[np.ndarray, FeatureSettings], dict[str, float]]] = {
    "first_order": first_order,
    "edges": edges,
    "glcm": glcm,
    "lbp": lbp,
    "shape": shape,
    "hog": hog,
}


def describe(image: np.ndarray, settings: FeatureSettings) -> dict[str, float]:
    """Every descriptor of ``settings`` that exists for the image's dimensionality, as ``<descriptor>/<name>``.

    Args:
        image: one channel, 2D or 3D, in ``settings.intensity_range``.
        settings: which descriptors, and how.
    """
    low, high = settings.intensity_range
    image = np.clip((np.asarray(image, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    named = {}
    for name in settings.descriptors:
        if image.ndim == 3 and name in PLANAR_ONLY:
            continue
        named.update({f"{name}/{key}": float(value) for key, value in EXTRACTORS[name](image, settings).items()})
    return named
