"""Registration pairs: a fixed and a moving image on the fixed image's grid, with optional label maps, landmarks and a
known displacement. Explicit pairs from files (every format of ``datamodules.readers``, DICOM series included), and
synthetic pairs made from real volumes by seeded smooth deformations.

Geometry: world coordinates are RAS millimetres (MONAI's readers turn ITK's LPS into RAS); a moving image on another
grid is resampled onto the fixed image's grid through both affines, so a pair is registered where it lies in the
world. A displacement is held in voxels of the fixed grid (what ``monai.networks.blocks.Warp`` reads) and converted to
millimetres through the fixed affine wherever it is reported or written.
"""

import csv
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback
from monai import transforms as mt
from monai.data import MetaTensor
from monai.networks.blocks import Warp
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.data_root import resolve_data_root
from datamodules.loaders import SplitDataModule
from datamodules.readers import LoadImageByType
from datamodules.segmentation import case_id
from datamodules.spec import DataSpec
from datamodules.validation import DatasetError

LANDMARK_SPACES = ("LPS", "RAS")
FREESURFER_NAMES = {
    2: "L_cerebral_wm", 3: "L_cerebral_cortex", 4: "L_lateral_ventricle", 5: "L_inf_lateral_ventricle",
    7: "L_cerebellum_wm", 8: "L_cerebellum_cortex", 10: "L_thalamus", 11: "L_caudate", 12: "L_putamen",
    13: "L_pallidum", 14: "3rd_ventricle", 15: "4th_ventricle", 16: "brain_stem", 17: "L_hippocampus",
    18: "L_amygdala", 24: "CSF", 26: "L_accumbens", 28: "L_ventral_dc", 30: "L_vessel", 31: "L_choroid_plexus",
    41: "R_cerebral_wm", 42: "R_cerebral_cortex", 43: "R_lateral_ventricle", 44: "R_inf_lateral_ventricle",
    46: "R_cerebellum_wm", 47: "R_cerebellum_cortex", 49: "R_thalamus", 50: "R_caudate", 51: "R_putamen",
    52: "R_pallidum", 53: "R_hippocampus", 54: "R_amygdala", 58: "R_accumbens", 60: "R_ventral_dc", 62: "R_vessel",
    63: "R_choroid_plexus", 77: "wm_hypointensities", 85: "optic_chiasm",
}  # fmt: skip
"""FreeSurfer's aseg structures (FreeSurferColorLUT), the label set brain registration is evaluated on."""


def lps_to_ras(points: np.ndarray) -> np.ndarray:
    """ITK's LPS world coordinates (N, 2 or 3) as RAS (x and y change sign); its own inverse, so a round trip is
    exact."""
    points = np.array(points, dtype=np.float64, copy=True)
    points[:, :2] *= -1
    return points


ras_to_lps = lps_to_ras


def read_landmarks(path: Path, spatial_dims: int, space: str) -> np.ndarray:
    """Points (N, spatial_dims) in RAS mm from a CSV with columns ``x, y[, z]`` in ``space`` (``LPS``: ITK, elastix
    and 3D Slicer's default; ``RAS``: nibabel)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: landmark file does not exist")
    axes = ["x", "y", "z"][:spatial_dims]
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or any(axis not in rows[0] for axis in axes):
        raise DatasetError(f"{path}: expected a CSV with columns {', '.join(axes)} (world mm, {space})")
    try:
        points = np.array([[float(row[axis]) for axis in axes] for row in rows])
    except ValueError as error:
        raise DatasetError(f"{path}: a coordinate is not a number ({error})") from error
    return lps_to_ras(points) if space == "LPS" else points


def spatial_affine(image: MetaTensor) -> Tensor:
    """The (D+1, D+1) voxel-to-world affine of a channel-first image (MONAI keeps 3x3 for 2D, 4x4 for 3D)."""
    return torch.as_tensor(image.affine, dtype=torch.float64)


def to_mm(ddf: Tensor, affine: Tensor) -> Tensor:
    """Voxel displacements (B, D, *spatial) as world (RAS) millimetres through the affine's linear part."""
    dims = ddf.shape[1]
    linear = affine[..., :dims, :dims].to(ddf.dtype)
    linear = linear if linear.ndim == 3 else linear.expand(len(ddf), dims, dims)
    return torch.einsum("bij,bj...->bi...", linear, ddf)


def normalise(image: Tensor) -> Tensor:
    """Intensities to [0, 1] between the 0.5th and 99.5th percentiles (clipped): CT, MR and photographs alike, so
    that the similarity losses and mutual-information bins see one range."""
    return mt.ScaleIntensityRangePercentiles(lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True)(image)


def remap_labels(label: Tensor, values: list[int] | None) -> Tensor:
    """Label values to class indices 1..K in ``values`` order; every other value (unevaluated structures) to 0."""
    label = label.round().long()
    if values is None:
        return (label > 0).long()
    lookup = torch.zeros(max(int(label.max()), max(values)) + 1, dtype=torch.long)
    lookup[torch.as_tensor(values)] = torch.arange(1, len(values) + 1)
    return lookup[label.clamp(min=0)]


@dataclass(frozen=True)
class PairFiles:
    """One explicit pair, paths relative to the data root.

    Args:
        fixed: the fixed (reference) image.
        moving: the image aligned to it.
        name: the pair's id (default: the moving file's name).
        fixed_label: label map on the fixed image's grid.
        moving_label: label map on the moving image's grid.
        fixed_landmarks: CSV of corresponding points (``x, y[, z]`` in ``landmark_space``) in the fixed image.
        moving_landmarks: the same points, same order, in the moving image.
    """

    fixed: str
    moving: str
    name: str | None = None
    fixed_label: str | None = None
    moving_label: str | None = None
    fixed_landmarks: str | None = None
    moving_landmarks: str | None = None


def read_pair(files: PairFiles, root: Path, label_values: list[int] | None, landmark_space: str) -> dict[str, Any]:
    """A pair on the fixed grid: ``fixed``, ``moving`` (1, *spatial) in [0, 1], ``fixed_label``/``moving_label``
    (class indices), ``fixed_points``/``moving_points`` (N, D) RAS mm, ``affine`` (the fixed image's), ``pair``.
    Each problem is a ``DatasetError`` naming the file."""
    paths = {key: root / value for key, value in asdict(files).items() if value and key != "name"}
    for key, path in paths.items():
        if not path.exists():
            raise FileNotFoundError(f"data pair {files.name or files.moving}: {key} {path} does not exist")
    images = {
        key: LoadImageByType([key])({key: str(path)})[key] for key, path in paths.items() if "landmarks" not in key
    }
    fixed, moving = images["fixed"], images["moving"]
    dims = {key: image.ndim - 1 for key, image in images.items()}
    if dims["fixed"] != dims["moving"]:
        raise DatasetError(f"{paths['moving']}: a {dims['moving']}D moving image for the {dims['fixed']}D fixed "
                           f"image {paths['fixed']}; expected both 2D or both 3D")  # fmt: skip
    for key in ("fixed", "moving"):
        image = images[key]
        if image.shape[0] != 1:
            raise DatasetError(f"{paths[key]}: {image.shape[0]} channels; expected one (a greyscale image)")
        if not torch.isfinite(image).all():
            raise DatasetError(f"{paths[key]}: holds NaN or infinite values")
        if float(image.max()) == float(image.min()):
            raise DatasetError(f"{paths[key]}: empty image (every voxel is {float(image.min()):g}); nothing to align")
        label = images.get(f"{key}_label")
        if label is not None and (
            label.shape[1:] != image.shape[1:]
            or not torch.allclose(spatial_affine(label), spatial_affine(image), atol=1e-3)
        ):
            raise DatasetError(
                f"{paths[f'{key}_label']}: its grid (shape {list(label.shape[1:])}, affine "
                f"{spatial_affine(label).numpy().round(3).tolist()}) differs from its image {paths[key]} (shape "
                f"{list(image.shape[1:])}, affine {spatial_affine(image).numpy().round(3).tolist()})"
            )
    pair: dict[str, Any] = {"pair": files.name or case_id(paths["moving"])}
    same_grid = moving.shape == fixed.shape and torch.allclose(spatial_affine(moving), spatial_affine(fixed), atol=1e-4)
    to_fixed = mt.ResampleToMatch(mode="bilinear", padding_mode="zeros")
    pair["fixed"] = normalise(fixed)
    moving = moving if same_grid else to_fixed(moving, fixed)
    pair["moving"], pair["moving_original"] = normalise(moving), moving
    for key in ("fixed_label", "moving_label"):
        if key in images:
            label = images[key]
            if key == "moving_label" and not same_grid:
                label = mt.ResampleToMatch(mode="nearest", padding_mode="zeros")(label, fixed)
            pair[key] = remap_labels(label.as_tensor(), label_values)
    landmarks = [key for key in ("fixed_landmarks", "moving_landmarks") if key in paths]
    if len(landmarks) == 1:
        raise DatasetError(f"data pair {pair['pair']}: {landmarks[0]} given without its counterpart")
    if landmarks:
        dims = dims["fixed"]
        points = {key: read_landmarks(paths[key], dims, landmark_space) for key in landmarks}
        if len(points["fixed_landmarks"]) != len(points["moving_landmarks"]):
            raise DatasetError(
                f"{paths['moving_landmarks']}: {len(points['moving_landmarks'])} points, but "
                f"{paths['fixed_landmarks']} has {len(points['fixed_landmarks'])}; expected corresponding points"
            )
        pair["fixed_points"] = torch.as_tensor(points["fixed_landmarks"], dtype=torch.float64)
        pair["moving_points"] = torch.as_tensor(points["moving_landmarks"], dtype=torch.float64)
    pair["affine"] = spatial_affine(fixed)
    return pair


def plain(pair: dict[str, Any]) -> dict[str, Any]:
    """Tensors without MONAI metadata (a batch of pairs; the affine travels as its own key)."""
    return {k: v.as_tensor() if isinstance(v, MetaTensor) else v for k, v in pair.items()}


@dataclass(frozen=True)
class Deformation:
    """The seeded smooth random displacements of synthetic pairs.

    Each component is Gaussian noise of standard deviation ``magnitude_mm`` on control points every
    ``control_spacing_mm``, interpolated (trilinear) to the image and smoothed by a Gaussian of sigma
    ``control_spacing_mm / 2``, so the field is smooth at the scale of anatomy, not of voxels.

    Args:
        magnitude_mm: standard deviation of each displacement component at the control points, in mm.
        control_spacing_mm: distance between the control points, in mm.
    """

    magnitude_mm: float = 4.0
    control_spacing_mm: float = 32.0


def random_displacement(shape: tuple[int, ...], spacing: Tensor, deformation: Deformation, seed: int) -> Tensor:
    """A smooth displacement (D, *shape) in voxels, the same for the same seed on every machine."""
    generator = torch.Generator().manual_seed(seed)
    dims = len(shape)
    extent = torch.tensor(shape, dtype=torch.float64) * spacing
    coarse = [max(2, int(round(float(e) / deformation.control_spacing_mm)) + 1) for e in extent]
    noise = torch.randn((1, dims, *coarse), generator=generator, dtype=torch.float64) * deformation.magnitude_mm
    # to a quarter of the image's size, smoothed there (cheap), then to the image
    quarter = [max(2, s // 4) for s in shape]
    mode = "bilinear" if dims == 2 else "trilinear"
    field = F.interpolate(noise, size=quarter, mode=mode, align_corners=True)
    sigma = deformation.control_spacing_mm / 2 / (spacing * torch.tensor(shape) / torch.tensor(quarter))
    field = mt.GaussianSmooth(sigma=sigma.tolist())(field[0])[None]
    field = F.interpolate(field, size=list(shape), mode=mode, align_corners=True)[0]
    return (field / spacing.view(-1, *[1] * dims)).float()  # mm to voxels, per axis


def relative_displacement(fixed_field: Tensor, moving_field: Tensor, iterations: int = 20) -> Tensor:
    """The displacement ``u`` that registers ``moving = source(x + moving_field)`` to ``fixed = source(x +
    fixed_field)``: ``u(x) = fixed_field(x) - moving_field(x + u(x))``, solved by fixed-point iteration (converges for
    smooth fields of a few voxels)."""
    warp = Warp(mode="bilinear", padding_mode="border")
    phi, psi = fixed_field[None], moving_field[None]
    u = phi - psi
    for _ in range(iterations):
        u = phi - warp(psi, u)
    return u[0]


def sample_labels(label: Tensor, field: Tensor, factor: int) -> Tensor:
    """The class at each voxel of a grid ``factor`` times coarser than ``label`` (1, *fine), displaced by ``field``
    (D, *coarse, in coarse voxels), by nearest neighbour in the fine map: labels of a deformed, downsampled volume
    that lose half a fine voxel at their boundaries, not half a coarse one."""
    dims = field.shape[0]
    coarse = torch.stack(torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in field.shape[1:]],
                                        indexing="ij"))  # fmt: skip
    fine = (coarse + field) * factor + (factor - 1) / 2
    size = torch.tensor(label.shape[1:], dtype=torch.float32).view(dims, *[1] * dims)
    grid = (2 * fine / (size - 1) - 1).flip(0).movedim(0, -1)[None]  # grid_sample reads (x, y[, z]) = reversed axes
    sampled = F.grid_sample(label[None].float(), grid, mode="nearest", padding_mode="border", align_corners=True)
    return sampled[0].long()


def refine_field(ddf: Tensor, factor: int, shape: tuple[int, ...]) -> Tensor:
    """A displacement (B, D, *coarse) in voxels of a grid ``factor`` times coarser, as a displacement on the fine
    grid ``shape`` in fine voxels (linear interpolation; block centres as in ``downsampled``)."""
    if factor == 1:
        return ddf
    dims = ddf.shape[1]
    fine = torch.stack(torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in shape], indexing="ij"))
    coarse = (fine - (factor - 1) / 2) / factor
    size = torch.tensor(ddf.shape[2:], dtype=torch.float32).view(dims, *[1] * dims)
    grid = (2 * coarse / (size - 1) - 1).flip(0).movedim(0, -1)[None].to(ddf.device)
    grid = grid.expand(len(ddf), *grid.shape[1:])
    return F.grid_sample(ddf.float(), grid, mode="bilinear", padding_mode="border", align_corners=True) * factor


class SyntheticPairs(Dataset):
    """Pairs made on the fly from one volume: fixed and moving are the volume under two seeded deformations
    (``seed + index``), so a pair's displacement is known exactly and the same on every machine and epoch. Labels
    are sampled from the full-resolution label map (``sample_labels``); with ``fine_labels`` they stay at full
    resolution (``label_factor`` in the pair), where the task measures Dice with the displacement refined to it.

    Args:
        image: (1, *spatial) intensities in [0, 1].
        label: (1, *spatial * factor) class indices at full resolution, or None.
        factor: how much finer ``label`` is than ``image``.
        affine: the image's voxel-to-world affine.
        deformation: how large and how smooth.
        seeds: one seed per pair.
        name: the pairs' prefix.
        fine_labels: labels at the full resolution rather than the image's.
    """

    def __init__(
        self, image: Tensor, label: Tensor | None, factor: int, affine: Tensor, deformation: Deformation,
        seeds: list[int], name: str, fine_labels: bool = False,
    ) -> None:  # fmt: skip
        self.image, self.label, self.factor, self.affine = image, label, factor, affine
        self.fine_labels = fine_labels and factor > 1
        self.deformation, self.seeds = deformation, seeds
        self.names = [f"{name}_{seed}" for seed in seeds]
        dims = image.ndim - 1
        self.spacing = self.affine[:dims, :dims].norm(dim=0)

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, index: int) -> dict[str, Any]:
        seed, shape = self.seeds[index], tuple(self.image.shape[1:])
        fixed_field = random_displacement(shape, self.spacing, self.deformation, 2 * seed)
        moving_field = random_displacement(shape, self.spacing, self.deformation, 2 * seed + 1)
        warp = Warp(mode="bilinear", padding_mode="border")
        pair = {
            "pair": self.names[index],
            "fixed": warp(self.image[None], fixed_field[None])[0],
            "moving": warp(self.image[None], moving_field[None])[0],
            "true_ddf": relative_displacement(fixed_field, moving_field),
            "affine": self.affine,
        }
        if self.label is not None and self.fine_labels:
            nearest, shape = Warp(mode="nearest", padding_mode="border"), tuple(self.label.shape[1:])
            for key, field in (("fixed_label", fixed_field), ("moving_label", moving_field)):
                pair[key] = nearest(self.label[None].float(), refine_field(field[None], self.factor, shape))[0].long()
            pair["label_factor"] = self.factor
        elif self.label is not None:
            pair["fixed_label"] = sample_labels(self.label, fixed_field, self.factor)
            pair["moving_label"] = sample_labels(self.label, moving_field, self.factor)
        return pair


class ListedPairs(Dataset):
    """Pairs read once (``read_pair``) and served as they are, ``repeats`` times per pass."""

    def __init__(self, pairs: list[dict[str, Any]], repeats: int = 1) -> None:
        self.pairs, self.repeats = pairs, repeats
        self.names = [p["pair"] for p in pairs] * repeats

    def __len__(self) -> int:
        return len(self.pairs) * self.repeats

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.pairs[index % len(self.pairs)]


class RegistrationDataModule(SplitDataModule):
    """What both kinds of pairs share: labels to evaluate, the spec, the loaders, and pairs for ``medlab predict``.

    ``medlab predict`` registers ``predict_pairs`` (or else the test pairs) and writes, per pair, the warped moving
    image, its warped labels and the displacement field as NIfTI in the fixed image's geometry
    (``datamodules.writers.RegistrationWriter``).

    Args:
        label_values: the label values evaluated (Dice), in order; other values count as background. None: any
            non-zero value is one foreground class.
        label_names: a name per evaluated label (default: its value), or ``freesurfer``: FreeSurfer's aseg names.
        spatial_dims: 2 or 3.
        predict_pairs: pairs for ``medlab predict`` (``[{fixed: ..., moving: ..., fixed_label: ...}]``, paths relative
            to the data root or absolute).
        output_dir: where ``medlab predict`` writes (default ``<run>/predictions``).
        landmark_space: the world frame of landmark CSVs: ``LPS`` (ITK, elastix, 3D Slicer) or ``RAS``.
        root: data root folder (default: ``$MEDLAB_DATA``, else ``../shared/data`` beside the checkout).
        batch_size: training pairs per step (evaluation registers one pair at a time).
        num_workers: loader worker processes.
    """

    def __init__(
        self,
        label_values: list[int] | None = None,
        label_names: list[str] | Literal["freesurfer"] | None = None,
        spatial_dims: int = 3,
        predict_pairs: list[PairFiles] | None = None,
        output_dir: str | None = None,
        landmark_space: str = "LPS",
        root: str | None = None,
        batch_size: int = 1,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if landmark_space not in LANDMARK_SPACES:
            raise ValueError(f"data.landmark_space: {landmark_space!r}; expected one of {', '.join(LANDMARK_SPACES)}")
        if label_names == "freesurfer":
            unknown = [v for v in label_values or [] if v not in FREESURFER_NAMES]
            if unknown or not label_values:
                raise ValueError(f"data.label_names: freesurfer names label_values; {unknown or 'none'} are not "
                                 "FreeSurfer aseg labels")  # fmt: skip
            label_names = [FREESURFER_NAMES[v] for v in label_values]
        if label_names is not None and label_values is not None and len(label_names) != len(label_values):
            raise ValueError(f"data.label_names: {len(label_names)} names for {len(label_values)} label_values")
        self.label_values, self.label_names, self.spatial_dims = label_values, label_names, spatial_dims
        self.predict_pairs, self.output_dir, self.landmark_space = predict_pairs, output_dir, landmark_space
        self.root, self.batch_size, self.num_workers = root, batch_size, num_workers

    @property
    def spec(self) -> DataSpec:
        names = self.label_names or [str(v) for v in self.label_values or []] or ["foreground"]
        return DataSpec(task="registration", num_outputs=len(names) + 1, in_channels=1,
                        spatial_dims=self.spatial_dims, class_names=["background", *names])  # fmt: skip

    def read_pairs(self, pairs: list[PairFiles], where: str) -> list[dict[str, Any]]:
        root = resolve_data_root(self.root) if any(not Path(p.fixed).is_absolute() for p in pairs) else Path("/")
        read = [plain(read_pair(p, root, self.label_values, self.landmark_space)) for p in pairs]
        for pair in read:
            if pair["fixed"].ndim - 1 != self.spatial_dims:
                raise DatasetError(f"{where} {pair['pair']}: a {pair['fixed'].ndim - 1}D pair; data.spatial_dims is "
                                   f"{self.spatial_dims}")  # fmt: skip
        return read

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict" and self.predict_pairs:
            self.datasets["predict"] = ListedPairs(self.read_pairs(self.predict_pairs, "data.predict_pairs"))
            self.item_names["predict"] = self.datasets["predict"].names
            self.predicted_inputs = [{"pair": name} for name in self.item_names["predict"]]

    def prediction_writer(self) -> Callback:
        from datamodules.writers import RegistrationWriter

        return RegistrationWriter(self.output_dir, self.label_values)

    def loader_options(self, split: str) -> dict[str, Any]:
        return {} if split == "train" else {"batch_size": 1}  # pairs differ in size and landmark count


class PairedImages(RegistrationDataModule):
    """Explicit pairs from files, split by name.

    A pair may be named in several splits: with one pair only (the head CT), training on it is per-pair
    optimisation of the network, not learning that generalises, and its scores say so much and no more.

    Args:
        pairs: ``[{fixed: ..., moving: ..., name: ..., fixed_label: ..., moving_label: ..., fixed_landmarks: ...,
            moving_landmarks: ...}]``, paths relative to the data root.
        train_pairs: names of the training pairs (default: every pair not tested or validated).
        val_pairs: names of the validation pairs.
        test_pairs: names of the test pairs.
        train_repeats: passes over the training pairs per epoch (a few pairs make epochs of a few steps).
        **kwargs: ``RegistrationDataModule``'s settings.
    """

    def __init__(
        self,
        pairs: list[PairFiles],
        train_pairs: list[str] | None = None,
        val_pairs: list[str] | None = None,
        test_pairs: list[str] | None = None,
        train_repeats: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.train_repeats = train_repeats
        self.pairs = [p if isinstance(p, PairFiles) else PairFiles(**p) for p in pairs]
        self.splits = {"train": train_pairs, "val": val_pairs or [], "test": test_pairs or []}

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if "test" in self.datasets:
            return
        read = {pair["pair"]: pair for pair in self.read_pairs(self.pairs, "data.pairs")}
        named = dict(self.splits)
        if named["train"] is None:
            named["train"] = [name for name in read if name not in {*named["val"], *named["test"]}]
        for split, names in named.items():
            unknown = [name for name in names if name not in read]
            if unknown:
                raise DatasetError(f"data.{split}_pairs: {unknown} are not pairs; the pairs are {list(read)}")
            repeats = self.train_repeats if split == "train" else 1
            self.datasets[split] = ListedPairs([read[name] for name in names], repeats)
        self.record_splits({split: list(names) for split, names in named.items()}, {})


class SyntheticDeformations(RegistrationDataModule):
    """Pairs made from one real volume by seeded smooth random deformations (``Deformation``): the displacement of
    every pair is known, so end-point error is measured, and a model is trained and tested without a second subject.
    Training, validation and test pairs come from disjoint seeds (``seed + i``, ``seed + 100000 + i``, ``seed +
    200000 + i``), so no test pair is ever trained on or used for a choice.

    Args:
        source: the volume, relative to the data root: an image file with an optional ``source_label`` file, or an
            ``.npz`` holding ``image_key`` and ``label_key``.
        source_label: the label map of an image-file source.
        image_key: the intensities in an ``.npz`` source.
        label_key: the label map in an ``.npz`` source (None: no labels).
        spacing: voxel size in mm of an ``.npz`` source (an image file has its own affine).
        downsample: average every ``downsample`` voxels per axis, for CPU.
        evaluate_full_resolution: validation and test labels at the source's resolution: Dice is measured there, with
            the displacement refined to it (nearest-neighbour label warps on a downsampled grid lose more than
            registration errors do: the exact displacement scores a mean Dice of 0.84 on the brain at 2 mm).
        deformation: how large and how smooth the random displacements are.
        num_train: training pairs.
        num_val: validation pairs.
        num_test: test pairs.
        seed: the first seed of each split's pairs.
        **kwargs: ``RegistrationDataModule``'s settings.
    """

    def __init__(
        self,
        source: str,
        source_label: str | None = None,
        image_key: str = "vol",
        label_key: str | None = "seg",
        spacing: list[float] | None = None,
        downsample: int = 1,
        evaluate_full_resolution: bool = True,
        deformation: Deformation = Deformation(),
        num_train: int = 100,
        num_val: int = 4,
        num_test: int = 20,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source, self.source_label, self.image_key, self.label_key = source, source_label, image_key, label_key
        self.spacing, self.downsample, self.deformation = spacing, downsample, deformation
        self.evaluate_full_resolution = evaluate_full_resolution
        self.counts, self.seed = {"train": num_train, "val": num_val, "test": num_test}, seed

    def read_source(self) -> tuple[Tensor, Tensor | None, Tensor]:
        """The volume (1, *spatial) in [0, 1] and its affine, downsampled; its class indices at full resolution."""
        root = resolve_data_root(self.root)
        path = root / self.source
        if not path.exists():
            raise FileNotFoundError(f"data.source: {path} does not exist")
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                missing = [k for k in (self.image_key, self.label_key) if k is not None and k not in archive]
                if missing:
                    raise DatasetError(f"{path}: no array {missing[0]!r}; it holds {sorted(archive.files)}")
                image = torch.as_tensor(archive[self.image_key], dtype=torch.float32)[None]
                label = None if self.label_key is None else torch.as_tensor(archive[self.label_key])[None]
            dims = image.ndim - 1
            affine = torch.diag(torch.tensor([*(self.spacing or [1.0] * dims), 1.0], dtype=torch.float64))
        else:
            files = {"image": str(path)} | ({"label": str(root / self.source_label)} if self.source_label else {})
            read = LoadImageByType(list(files))(files)
            image, affine = read["image"].as_tensor(), spatial_affine(read["image"])
            label = read["label"].as_tensor() if "label" in read else None
        if image.ndim - 1 != self.spatial_dims:
            raise DatasetError(f"{path}: a {image.ndim - 1}D volume; data.spatial_dims is {self.spatial_dims}")
        if label is not None and label.shape != image.shape:
            raise DatasetError(f"{path}: label map of shape {list(label.shape[1:])} for an image of "
                               f"{list(image.shape[1:])}")  # fmt: skip
        image = normalise(image)
        label = None if label is None else remap_labels(label, self.label_values)
        if self.downsample > 1:
            image, affine = downsampled(image, affine, self.downsample)
        return image, label, affine

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if "test" in self.datasets:
            return
        image, label, affine = self.read_source()
        offsets = {"train": 0, "val": 100_000, "test": 200_000}
        for split, count in self.counts.items():
            seeds = [self.seed + offsets[split] + i for i in range(count)]
            self.datasets[split] = SyntheticPairs(
                image,
                label,
                self.downsample,
                affine,
                self.deformation,
                seeds,
                split,
                fine_labels=split != "train" and self.evaluate_full_resolution,
            )
        self.record_splits(
            {split: self.datasets[split].names for split in self.counts},
            {"source": self.source, "downsample": self.downsample, **asdict(self.deformation), "seed": self.seed},
        )


def downsampled(image: Tensor, affine: Tensor, factor: int) -> tuple[Tensor, Tensor]:
    """The mean of every ``factor``^D block, and the affine of that grid (voxels ``factor`` times larger, the origin
    at the first block's centre)."""
    dims = image.ndim - 1
    image = (F.avg_pool2d if dims == 2 else F.avg_pool3d)(image[None], factor)[0]
    affine = affine.clone()
    affine[:dims, dims] += affine[:dims, :dims] @ torch.full((dims,), (factor - 1) / 2, dtype=torch.float64)
    affine[:dims, :dims] *= factor
    return image, affine
