"""Segmentation sets: image/mask pairs from folders (every suffix of ``datamodules.readers``, DICOM series), the
Medical Segmentation Decathlon layout, and synthetic 2D/3D images. MONAI dictionary transforms, one named pipeline
per modality."""

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydicom
import torch
from monai import transforms as mt
from monai.data import CacheDataset, Dataset, list_data_collate, load_decathlon_datalist
from monai.data.synthetic import create_test_image_2d, create_test_image_3d

from datamodules.data_root import resolve_data_root
from datamodules.inputs import Prediction
from datamodules.loaders import SplitDataModule
from datamodules.readers import IMAGE_SUFFIXES, LoadImageByType, image_suffix
from datamodules.spec import DataSpec
from datamodules.validation import DatasetError, as_dataset_error
from datamodules.writers import MaskWriter

Modality = Literal["ct", "mr", "photo"]


def case_id(path: Path) -> str:
    """File name without its image suffix (``case_01.nii.gz`` -> ``case_01``); a DICOM folder keeps its name."""
    suffix = image_suffix(path)
    return path.name[: -len(suffix)] if suffix else path.name


def check_dicom_series(folder: Path) -> None:
    """A DICOM folder must hold exactly one series, or slices of two scans would be stacked into one volume."""
    series: dict[str, list[str]] = {}
    for file in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            header = pydicom.dcmread(file, stop_before_pixels=True)
        except pydicom.errors.InvalidDicomError as error:
            raise DatasetError(f"{file}: not a DICOM file ({error})") from error
        series.setdefault(str(header.get("SeriesInstanceUID", "?")), []).append(file.name)
    if len(series) != 1:
        # Which files, not the UIDs: a UID identifies the study in its hospital's archive.
        detail = "; ".join(f"{len(files)} files from {files[0]}" for files in series.values())
        raise DatasetError(f"{folder}: expected one DICOM series, found {len(series)} ({detail})")


@dataclass(frozen=True)
class Labels:
    """The classes of the masks.

    Args:
        num_classes: classes, background included.
        names: a name per class (default: the class indices).
        values: raw mask values in class order, e.g. ``[255, 0]``; default ``0..num_classes-1``.
        unlisted: ``error`` for a mask value not listed, or ``background`` to map it to the first class.
        allow_empty: keep cases whose mask holds only background.
    """

    num_classes: int = 2
    names: list[str] | None = None
    values: list[int] | None = None
    unlisted: Literal["error", "background"] = "error"
    allow_empty: bool = False


@dataclass(frozen=True)
class Intensity:
    """How voxel values are scaled.

    Args:
        modality: ``ct`` (HU window), ``mr`` (z-score over the body), ``photo`` (to [0, 1]).
        ct_window: HU range mapped to [0, 1] for ``modality: ct``.
    """

    modality: Modality = "photo"
    ct_window: tuple[float, float] = (-1000.0, 1000.0)


@dataclass(frozen=True)
class Patches:
    """What training sees.

    Args:
        size: training patch (and default sliding-window ROI); default 96 per axis.
        per_image: foreground-balanced patches cropped from each training image.
        augment: flips, right-angle rotations and intensity jitter of the training patches.
    """

    size: list[int] | None = None
    per_image: int = 4
    augment: bool = True


@dataclass(frozen=True)
class Split:
    """Which cases validate and test.

    Args:
        test_cases: case ids of the test split.
        val_cases: case ids of the validation split; none: fold ``fold`` of a seeded k-fold of the other cases.
        num_folds: folds of that k-fold.
        fold: which fold validates.
        seed: seed of the k-fold.
    """

    test_cases: list[str] | None = None
    val_cases: list[str] | None = None
    num_folds: int = 5
    fold: int = 0
    seed: int = 0


class SegmentationDataModule(SplitDataModule, ABC):
    """Cases as ``{"image", "label", "case"}`` dicts, split, checked, transformed, and batched.

    Splits: ``split.test_cases`` and ``split.val_cases`` name cases explicitly; otherwise ``split.num_folds`` /
    ``split.fold`` make a seeded k-fold of the non-test cases, written to ``splits.json`` in the run folder so a result
    can be traced to its split. ``labels.values`` lists the raw mask values in class order (ISBI: ``[255, 0]`` makes
    class 0 the cells and class 1 the membranes); values not listed are an error, or background with
    ``labels.unlisted: background``. Every case is loaded and checked in ``setup``, before training.

    Args:
        labels: the classes of the masks (``num_classes``, ``names``, ``values``, ``unlisted``, ``allow_empty``).
        spatial_dims: 2 for images, 3 for volumes.
        in_channels: image channels (1 greyscale, 3 RGB); other images are refused.
        spacing: resample 3D volumes to this voxel size (mm); none keeps each volume's own.
        intensity: how voxel values are scaled (``modality``, ``ct_window``).
        patches: what training sees (``size``, ``per_image``, ``augment``).
        split: which cases validate and test (``test_cases``, ``val_cases``, ``num_folds``, ``fold``, ``seed``).
        prediction: what ``medlab predict`` segments (``paths``, ``output_dir``).
        cache: keep the loaded, preprocessed cases in memory (MONAI ``CacheDataset``).
        require_deidentified: refuse DICOM files not marked de-identified (PatientIdentityRemoved = YES), naming
            the file: for studies that may only use de-identified data (``medlab deid``).
        batch_size: training images per batch (each gives ``patches.per_image`` patches); evaluation goes one image at
            a time.
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        labels: Labels = Labels(),
        spatial_dims: int = 2,
        in_channels: int = 1,
        spacing: list[float] | None = None,
        intensity: Intensity = Intensity(),
        patches: Patches = Patches(),
        split: Split = Split(),
        prediction: Prediction = Prediction(),
        cache: bool = True,
        require_deidentified: bool = False,
        batch_size: int = 2,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if labels.names is not None and len(labels.names) != labels.num_classes:
            raise ValueError(
                f"data.labels.names has {len(labels.names)} names for data.labels.num_classes={labels.num_classes}"
            )
        if labels.values is not None and len(labels.values) != labels.num_classes:
            raise ValueError(
                f"data.labels.values has {len(labels.values)} values for data.labels.num_classes={labels.num_classes}"
            )
        if not 0 <= split.fold < split.num_folds:
            raise ValueError(f"data.split.fold must be in [0, {split.num_folds - 1}], got {split.fold}")
        self.labels, self.intensity, self.split, self.prediction = labels, intensity, split, prediction
        self.require_deidentified = require_deidentified
        self.num_classes = labels.num_classes
        self.class_names = labels.names or [str(i) for i in range(labels.num_classes)]
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.spacing = spacing
        self.patches = patches
        self.patch_size = patches.size or [96] * spatial_dims
        self.cache = cache
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.splits: dict[str, list[str]] = {}

    @property
    def spec(self) -> DataSpec:
        return DataSpec(
            "segmentation", self.num_classes, self.in_channels, self.spatial_dims, self.class_names, self.patch_size
        )

    @property
    def preprocessing(self) -> dict[str, Any]:
        intensity = {
            "ct": f"HU window {self.intensity.ct_window} scaled to [0, 1], clipped",
            "mr": "z-score over the non-zero voxels, per channel",
        }.get(self.intensity.modality, "min-max scaled to [0, 1] per image")
        geometry = {"orientation": "RAS", "spacing": self.spacing} if self.spatial_dims == 3 else {}
        values = self.labels.values if self.labels.values is not None else list(range(self.num_classes))
        return {"input": f"float32 (batch, {self.in_channels}, *spatial)", **geometry, "intensity": intensity,
                "label_values": values, "inference": f"sliding windows of {self.patch_size}"}  # fmt: skip

    @abstractmethod
    def cases(self) -> list[dict[str, Any]]:
        """Every labelled case as ``{"image": ..., "label": ..., "case": id}``."""

    # -- transforms -----------------------------------------------------------------------------------------
    def load_transforms(self, keys: list[str]) -> list[mt.Transform]:
        """Read files with the reader their suffix names (PIL, nibabel, ITK, pydicom), channel first."""
        return [LoadImageByType(keys, require_deidentified=self.require_deidentified)]

    def geometry_transforms(self, keys: list[str]) -> list[mt.Transform]:
        if self.spatial_dims != 3:
            return []
        steps: list[mt.Transform] = [mt.Orientationd(keys=keys, axcodes="RAS")]
        if self.spacing:
            modes = ["bilinear" if key == "image" else "nearest" for key in keys]
            steps.append(mt.Spacingd(keys=keys, pixdim=self.spacing, mode=modes))
        return steps

    def intensity_transforms(self) -> list[mt.Transform]:
        """CT: HU window to [0, 1]; MR: z-score over the body; microscopy/photo: scale to [0, 1]."""
        if self.intensity.modality == "ct":
            low, high = self.intensity.ct_window
            return [mt.ScaleIntensityRanged(keys="image", a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)]
        if self.intensity.modality == "mr":
            return [mt.NormalizeIntensityd(keys="image", nonzero=True, channel_wise=True)]
        return [mt.ScaleIntensityd(keys="image", minv=0.0, maxv=1.0)]

    def label_transforms(self) -> list[mt.Transform]:
        labels = self.labels
        allowed = labels.values if labels.values is not None else list(range(self.num_classes))
        steps: list[mt.Transform] = [
            CheckCase(self.in_channels, self.spatial_dims, allowed, labels.unlisted, labels.allow_empty)
        ]
        if labels.values is not None:
            steps.append(
                mt.MapLabelValued(keys="label", orig_labels=labels.values, target_labels=range(self.num_classes))
            )
        return steps

    def deterministic_transforms(self) -> mt.Compose:
        keys = ["image", "label"]
        return mt.Compose(
            [
                *self.load_transforms(keys),
                *self.geometry_transforms(keys),
                *self.label_transforms(),
                *self.intensity_transforms(),
                mt.EnsureTyped(keys=keys, dtype=(torch.float32, torch.long)),
            ]
        )

    @cached_property
    def predict_transform(self) -> mt.Compose:
        """The image half of the preprocessing; ``MaskWriter`` inverts this same instance (MONAI matches
        transforms by identity) to write masks in the input's geometry."""
        keys = ["image"]
        check = CheckPredictImage(self.in_channels, self.spatial_dims, self.intensity.modality)
        # Predictions come from files, whatever the training data came from.
        load = LoadImageByType(keys, require_deidentified=self.require_deidentified)
        return mt.Compose([load, check, *self.geometry_transforms(keys), *self.intensity_transforms()])

    def augmentation_transforms(self) -> mt.Compose:
        """Foreground-balanced random crops, flips, right-angle rotations and intensity jitter."""
        keys = ["image", "label"]
        steps: list[mt.Transform] = [
            mt.SpatialPadd(keys=keys, spatial_size=self.patch_size),
            mt.RandCropByPosNegLabeld(
                keys=keys,
                label_key="label",
                spatial_size=self.patch_size,
                pos=1,
                neg=1,
                num_samples=self.patches.per_image,
            ),
        ]
        if self.patches.augment:
            steps += [mt.RandFlipd(keys=keys, prob=0.5, spatial_axis=axis) for axis in range(self.spatial_dims)]
            steps += [
                mt.RandRotate90d(keys=keys, prob=0.5, spatial_axes=(0, 1)),
                mt.RandScaleIntensityd(keys="image", factors=0.1, prob=0.5),
                mt.RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5),
            ]
        return mt.Compose(steps)

    # -- splits and datasets --------------------------------------------------------------------------------
    def split_cases(self, cases: list[dict[str, Any]]) -> dict[str, list[str]]:
        ids = [c["case"] for c in cases]
        split = self.split
        unknown = sorted((set(split.test_cases or []) | set(split.val_cases or [])) - set(ids))
        if unknown:
            raise DatasetError(
                f"data.split.test_cases / data.split.val_cases name unknown cases {unknown}; cases are {ids}"
            )
        test = [i for i in ids if i in set(split.test_cases or [])]
        rest = [i for i in ids if i not in set(test)]
        if split.val_cases is not None:
            val = [i for i in rest if i in set(split.val_cases)]
        else:
            order = np.random.default_rng(split.seed).permutation(len(rest))
            val = sorted((rest[j] for j in np.array_split(order, split.num_folds)[split.fold]), key=ids.index)
        train = [i for i in rest if i not in set(val)]
        if not train or not val:
            raise DatasetError(f"split leaves train={len(train)} and val={len(val)} cases; both need at least one")
        return {"train": train, "val": val, "test": test}

    def prediction_writer(self) -> MaskWriter:
        values = self.labels.values or list(range(self.num_classes))
        return MaskWriter(self.predict_transform, self.prediction.output_dir, values)

    def setup_predict(self) -> None:
        """Every input is read and checked before the first mask is written, so a bad file leaves no partial output."""
        paths = self.prediction.paths
        if not paths:
            raise DatasetError("medlab predict needs data.prediction.paths: the images to segment")
        missing = [p for p in paths if not Path(p).exists()]
        if missing:
            raise FileNotFoundError(f"data.prediction.paths: {missing} do not exist")
        for path in paths:
            try:
                self.predict_transform({"image": path})
            except Exception as error:
                raise as_dataset_error(error, str(path)) from error
        self.datasets["predict"] = Dataset([{"image": p} for p in paths], self.predict_transform)

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            if "predict" not in self.datasets:
                self.setup_predict()
            return
        if "train" in self.datasets:
            return
        cases = self.cases()
        self.splits = self.split_cases(cases)
        folds = self.split
        self.record_splits(self.splits, {"num_folds": folds.num_folds, "fold": folds.fold, "seed": folds.seed})
        by_id = {c["case"]: c for c in cases}
        prepare = self.deterministic_transforms()
        for split, ids in self.splits.items():
            data = [by_id[i] for i in ids]
            try:  # loading checks every case (CheckCase) now, before training
                if self.cache:
                    base: Dataset = CacheDataset(data, prepare, num_workers=0, progress=False)
                else:
                    for case in data:
                        prepare(case)
                    base = Dataset(data, prepare)
            except Exception as error:
                raise _explain(data, prepare) from error
            # The cached deterministic half, then the augmentations, rather than one CacheDataset over the whole
            # pipeline (MONAI caches up to its first random transform): validation and test need the first half alone.
            self.datasets[split] = Dataset(base, self.augmentation_transforms()) if split == "train" else base

    def loader_options(self, split: str) -> dict:
        # Patches batch together; whole images of any size go one at a time.
        return {"collate_fn": list_data_collate, "batch_size": self.batch_size if split == "train" else 1}


class CheckCase(mt.MapTransform):
    """Refuses a case whose image has other than ``in_channels`` channels or ``spatial_dims`` axes, whose image and
    mask disagree in shape or geometry, whose mask has several channels, values outside ``allowed`` or no
    foreground, or whose image has NaN/inf voxels, naming both files.

    Args:
        in_channels: image channels the network takes.
        spatial_dims: 2 or 3.
        allowed: raw mask values in class order (the first is background).
        unlisted_labels: ``error``, or ``background`` to map other mask values to the background.
        allow_empty_masks: keep cases whose mask holds only background.
    """

    def __init__(
        self, in_channels: int, spatial_dims: int, allowed: list[int], unlisted_labels: str, allow_empty_masks: bool
    ) -> None:
        super().__init__(keys=["image", "label"])
        self.in_channels, self.spatial_dims, self.allowed = in_channels, spatial_dims, list(allowed)
        self.unlisted_labels, self.allow_empty_masks = unlisted_labels, allow_empty_masks

    def __call__(self, case: dict[str, Any]) -> dict[str, Any]:
        image, label = case["image"], case["label"]
        where = f"case {case.get('case', '?')} (image {_source(image)}, mask {_source(label)})"
        check_image(image, self.in_channels, self.spatial_dims, where)
        if label.shape[0] != 1:
            raise DatasetError(f"{where}: the mask has {label.shape[0]} channels, expected 1 (a label map)")
        if image.shape[1:] != label.shape[1:]:
            raise DatasetError(f"{where}: image shape {tuple(image.shape[1:])} != mask shape {tuple(label.shape[1:])}")
        if (
            hasattr(image, "affine")
            and hasattr(label, "affine")
            and not torch.allclose(image.affine.float(), label.affine.float(), atol=1e-3)
        ):
            raise DatasetError(f"{where}: image and mask have different geometry (affines differ)")
        values = _mask_values(label)
        allowed = self.allowed
        unexpected = sorted(set(values) - set(allowed))
        if unexpected and self.unlisted_labels == "background":
            label = label.clone()
            label[~torch.isin(torch.as_tensor(label), torch.tensor(allowed))] = allowed[0]
            case = {**case, "label": label}
            values = _mask_values(label)
        elif unexpected:
            raise DatasetError(f"{where}: mask values {unexpected} are not among the configured classes {allowed}")
        if not self.allow_empty_masks and set(values) <= {allowed[0]}:
            raise DatasetError(
                f"{where}: the mask is empty (only background); set data.labels.allow_empty=true to keep it"
            )
        return case


def check_image(image: Any, in_channels: int, spatial_dims: int, where: str) -> None:
    """A channel-first image must have ``in_channels`` channels, ``spatial_dims`` spatial axes and finite voxels."""
    if image.ndim - 1 != spatial_dims:
        raise DatasetError(
            f"{where}: a {image.ndim - 1}D image of shape {tuple(image.shape[1:])}, expected {spatial_dims}D "
            f"(data.spatial_dims={spatial_dims})"
        )
    if image.shape[0] != in_channels:
        kind = {1: "greyscale", 3: "RGB", 4: "RGBA"}.get(int(image.shape[0]), "")
        raise DatasetError(
            f"{where}: the image has {image.shape[0]} channels{f' ({kind})' if kind else ''}, "
            f"expected {in_channels} (data.in_channels={in_channels})"
        )
    if not torch.isfinite(torch.as_tensor(image)).all():
        raise DatasetError(f"{where}: the image has NaN/inf voxels")


class CheckPredictImage(mt.MapTransform):
    """Refuses an input the network cannot take (channels, 2D/3D), naming the file, and warns when its intensities do
    not look like the modality the model was trained on (a CT model given an MR scan gives confident nonsense).

    Args:
        in_channels: image channels the network takes.
        spatial_dims: 2 or 3.
        modality: what the model was trained on (``ct`` expects Hounsfield units, air near -1000).
    """

    def __init__(self, in_channels: int, spatial_dims: int, modality: str) -> None:
        super().__init__(keys=["image"])
        self.in_channels, self.spatial_dims, self.modality = in_channels, spatial_dims, modality

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        image = data["image"]
        source = _source(image)
        check_image(image, self.in_channels, self.spatial_dims, source)
        values = torch.as_tensor(image).float().flatten()
        low = float(torch.quantile(values[:: max(1, len(values) // 100_000)], 0.01))
        if self.modality == "ct" and low > -500:
            warnings.warn(
                f"{source}: intensities start at {low:.0f} (1st percentile), which does not look like CT in "
                "Hounsfield units (air is about -1000); the model was trained on data.modality=ct",
                stacklevel=2,
            )
        elif self.modality == "mr" and low < -500:
            warnings.warn(
                f"{source}: intensities reach {low:.0f} (1st percentile), which looks like CT in Hounsfield units; "
                "the model was trained on data.modality=mr",
                stacklevel=2,
            )
        return data


def _explain(cases: list[dict[str, Any]], prepare: mt.Compose) -> Exception:
    """The error of the first case that fails to load, naming its files (MONAI wraps it in RuntimeErrors)."""
    for case in cases:
        try:
            prepare(case)
        except Exception as error:
            return as_dataset_error(error, f"case {case['case']} (image {case['image']}, mask {case['label']})")
    return RuntimeError("loading the cases failed, and no single case fails on its own")


def _mask_values(label: Any) -> list[int | float]:
    return [int(v) if float(v).is_integer() else v for v in torch.unique(torch.as_tensor(label)).tolist()]


def _source(item: Any) -> str:
    meta = getattr(item, "meta", {})
    return str(meta.get("filename_or_obj", "in memory"))


class SegmentationFolders(SegmentationDataModule):
    """Pairs from two folders, matched by name: image files of any documented suffix, or one DICOM series per folder.

    Folders are relative to the data root (``data.root``, ``$MEDLAB_DATA`` or ``../shared/data``).

    Args:
        image_dir: folder of images (or DICOM series folders), relative to the data root.
        label_dir: folder of masks with the same names.
        root: data root folder (default: ``$MEDLAB_DATA``, else ``../shared/data`` beside the checkout).
        **kwargs: labels, intensity, patches, splits, prediction, require_deidentified (``SegmentationDataModule``).
    """

    def __init__(self, image_dir: str, label_dir: str, root: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.image_dir, self.label_dir, self.root = image_dir, label_dir, root

    def _items(self, folder: Path) -> dict[str, Path]:
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder (expected images or masks, named alike)")
        items = {}
        for path in sorted(folder.iterdir()):
            if path.is_dir():
                check_dicom_series(path)
            elif image_suffix(path) is None:
                raise DatasetError(f"{path}: not an image file (expected {', '.join(IMAGE_SUFFIXES)} or DICOM folders)")
            items[case_id(path)] = path
        return items

    def cases(self) -> list[dict[str, Any]]:
        root = resolve_data_root(self.root)
        images, labels = self._items(root / self.image_dir), self._items(root / self.label_dir)
        unmatched = sorted(set(images) ^ set(labels))
        if unmatched:
            raise DatasetError(
                f"{root / self.image_dir} and {root / self.label_dir}: no pair for {unmatched}; "
                "images and masks must share their names"
            )
        ordered = sorted(images, key=lambda k: (len(k), k))  # 2 before 10
        return [{"image": str(images[k]), "label": str(labels[k]), "case": k} for k in ordered]


class SegmentationList(SegmentationDataModule):
    """Cases listed in the config: ``[{image: ..., label: ..., case: ...}]``, paths relative to the data root.

    ``allow_split_overlap: true`` trains on every case and validates/tests on the named ones even when they
    overlap: for pipeline plumbing on one volume only; its scores say nothing about generalisation.

    Args:
        cases: ``[{image: ..., label: ..., case: ...}]``, paths relative to the data root.
        root: data root folder (default: ``$MEDLAB_DATA``, else ``../shared/data`` beside the checkout).
        allow_split_overlap: train on every case and validate/test on the named ones even when they overlap (plumbing
            only).
        **kwargs: labels, intensity, patches, splits, prediction, require_deidentified (``SegmentationDataModule``).
    """

    def __init__(
        self, cases: list[dict[str, str]], root: str | None = None, allow_split_overlap: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.listed, self.root, self.allow_split_overlap = cases, root, allow_split_overlap

    def cases(self) -> list[dict[str, Any]]:
        root = resolve_data_root(self.root)
        cases = []
        for entry in self.listed:
            case = {key: str(root / entry[key]) for key in ("image", "label")}
            for key, path in case.items():
                if not Path(path).exists():
                    raise FileNotFoundError(f"data.cases: {key} {path} does not exist")
            cases.append({**case, "case": entry.get("case") or case_id(Path(entry["image"]))})
        return cases

    def split_cases(self, cases: list[dict[str, Any]]) -> dict[str, list[str]]:
        if not self.allow_split_overlap:
            return super().split_cases(cases)
        warnings.warn(
            "data.allow_split_overlap: validation/test cases are also trained on (plumbing only)", stacklevel=2
        )
        ids = [c["case"] for c in cases]
        return {"train": ids, "val": list(self.split.val_cases or ids), "test": list(self.split.test_cases or ids)}


class DecathlonSegmentation(SegmentationDataModule):
    """A Medical Segmentation Decathlon task folder: ``dataset.json`` with its ``training`` list.

    Args:
        task_dir: the task folder (holding ``dataset.json``), relative to the data root.
        root: data root folder (default: ``$MEDLAB_DATA``, else ``../shared/data`` beside the checkout).
        **kwargs: labels, intensity, patches, splits, prediction, require_deidentified (``SegmentationDataModule``).
    """

    def __init__(self, task_dir: str, root: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.task_dir, self.root = task_dir, root

    def cases(self) -> list[dict[str, Any]]:
        folder = resolve_data_root(self.root) / self.task_dir
        listing = folder / "dataset.json"
        if not listing.is_file():
            raise FileNotFoundError(f"{listing}: no such file (expected an MSD task folder with dataset.json)")
        cases = load_decathlon_datalist(listing, is_segmentation=True, data_list_key="training", base_dir=folder)
        for case in cases:
            for key in ("image", "label"):
                if not Path(case[key]).exists():
                    raise FileNotFoundError(f"{listing}: lists {case[key]}, which does not exist")
            case["case"] = case_id(Path(case["image"]))
        return cases


class SyntheticSegmentation(SegmentationDataModule):
    """Noisy images of random circles (2D) or spheres (3D) from MONAI's ``create_test_image_2d/3d``.

    Args:
        image_size: side of each image or volume.
        num_images: images made; the last fifth is the test set and the fifth before it validation.
        num_objects: circles or spheres per image.
        noise: maximum noise amplitude.
        seed: generator seed of the data.
        **kwargs: labels, patches, splits (``SegmentationDataModule``).
    """

    def __init__(
        self, image_size: int = 64, num_images: int = 40, num_objects: int = 5, noise: float = 0.5, seed: int = 0,
        **kwargs: Any,
    ) -> None:  # fmt: skip
        # The last fifth of the images is the test set and the fifth before it validation, unless configured.
        fifth = max(num_images // 5, 1)
        split = kwargs.get("split") or Split()
        kwargs["split"] = replace(
            split,
            test_cases=[str(i) for i in range(num_images - fifth, num_images)]
            if split.test_cases is None
            else split.test_cases,
            val_cases=[str(i) for i in range(num_images - 2 * fifth, num_images - fifth)]
            if split.val_cases is None
            else split.val_cases,
        )
        super().__init__(**kwargs)
        self.image_size, self.num_images, self.num_objects = image_size, num_images, num_objects
        self.noise, self.seed = noise, seed

    def cases(self) -> list[dict[str, Any]]:
        make = create_test_image_3d if self.spatial_dims == 3 else create_test_image_2d
        size = [self.image_size] * self.spatial_dims
        rng = np.random.RandomState(self.seed)
        cases = []
        for i in range(self.num_images):
            image, label = make(
                *size, num_objs=self.num_objects, rad_max=self.image_size // 6, rad_min=self.image_size // 16,
                noise_max=self.noise, num_seg_classes=self.num_classes - 1, random_state=rng,
            )  # fmt: skip
            cases.append({"image": image.astype(np.float32), "label": label.astype(np.int64), "case": str(i)})
        return cases

    def load_transforms(self, keys: list[str]) -> list[mt.Transform]:
        return [mt.EnsureChannelFirstd(keys=keys, channel_dim="no_channel")]
