"""Descriptors of a batch of images, computed once: cached on disk under a key of the images' bytes and the
settings, so a second run (another seed, another classifier) reads them back instead of recomputing."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

from datamodules.arrays import cache_root
from research.features.descriptors import FeatureSettings, describe

CACHE_VERSION = 1  # bump when a descriptor's definition changes, so old caches are not read


def default_cache_dir() -> Path:
    """``$MEDLAB_CACHE/features``, else ``~/.cache/medlab/features``."""
    return cache_root() / "features"


def describe_image(image: np.ndarray, settings: FeatureSettings) -> dict[str, float]:
    """One image (C, *spatial): each channel's descriptors, prefixed ``c<i>/`` when there are several."""
    if len(image) == 1:
        return describe(image[0], settings)
    return {
        f"c{c}/{name}": value for c, channel in enumerate(image) for name, value in describe(channel, settings).items()
    }


class FeatureExtractor:
    """Turns images (N, C, *spatial) into a feature matrix (N, F) and its column names.

    Args:
        settings: the descriptors and their settings.
        cache_dir: where computed features are kept (``None``: ``default_cache_dir()``).
        workers: processes computing descriptors (-1: one per core); batches under 64 images use one.
    """

    def __init__(self, settings: FeatureSettings, cache_dir: str | Path | None = None, workers: int = -1) -> None:
        self.settings = settings
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.workers = workers

    def key(self, images: np.ndarray) -> str:
        digest = hashlib.sha256()
        digest.update(json.dumps([CACHE_VERSION, self.settings.as_dict(), images.shape, str(images.dtype)]).encode())
        digest.update(np.ascontiguousarray(images).tobytes())
        return digest.hexdigest()[:32]

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Features and names of ``images``, from the cache when these images were described with these settings."""
        if not self.settings.descriptors:
            return np.zeros((len(images), 0), dtype=np.float32), []
        path = self.cache_dir / f"{self.key(images)}.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as cached:
                return cached["features"], cached["names"].tolist()
        workers = self.workers if len(images) >= 64 else 1
        rows = Parallel(n_jobs=workers)(delayed(describe_image)(image, self.settings) for image in images)
        names = list(rows[0])
        features = np.array([list(row.values()) for row in rows], dtype=np.float32)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(temporary, features=features, names=np.array(names))
        os.replace(temporary, path)  # atomic: a concurrent run reads a whole file or none
        return features, names
