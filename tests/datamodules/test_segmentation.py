import json
import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from monai.transforms import LoadImage
from PIL import Image

from datamodules.readers import LoadImageByType
from datamodules.segmentation import (
    CheckPredictImage,
    DecathlonSegmentation,
    Intensity,
    Labels,
    Patches,
    SegmentationFolders,
    Split,
    SyntheticSegmentation,
    case_id,
    check_dicom_series,
)
from datamodules.validation import DatasetError


def write_png_pairs(root: Path, count: int = 6, size: int = 48) -> Path:
    rng = np.random.default_rng(0)
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        mask = np.zeros((size, size), np.uint8)
        mask[8 + i : 24 + i, 10:30] = 255
        Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")
    return root


def folders(root: Path, labels: dict | None = None, patches: dict | None = None, split: dict | None = None,
            **kwargs) -> SegmentationFolders:  # fmt: skip
    """The PNG pairs of ``write_png_pairs``: masks of 0/255, 32 px patches, case 4 validates, case 5 tests."""
    return SegmentationFolders(
        "images", "masks", root=str(root), labels=Labels(**{"values": [0, 255], **(labels or {})}),
        patches=Patches(**{"size": [32, 32], **(patches or {})}),
        split=Split(**{"val_cases": ["4"], "test_cases": ["5"], **(split or {})}), **kwargs,
    )  # fmt: skip


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(array, np.diag([1.5, 1.5, 3.0, 1.0]) if affine is None else affine), path)
    return path


def test_png_pairs_are_split_mapped_and_cropped(tmp_path: Path) -> None:
    data = folders(write_png_pairs(tmp_path), patches={"per_image": 2})
    data.setup("fit")
    assert data.splits == {"train": ["0", "1", "2", "3"], "val": ["4"], "test": ["5"]}
    val = data.datasets["val"][0]
    assert val["image"].shape == (1, 48, 48) and val["image"].min() >= 0 and val["image"].max() <= 1
    assert set(val["label"].unique().tolist()) == {0, 1}  # 255 mapped to class 1
    patches = data.datasets["train"][0]
    assert len(patches) == 2 and patches[0]["image"].shape == (1, 32, 32)


def test_kfold_splits_are_seeded_disjoint_and_written_beside_the_run(tmp_path: Path) -> None:
    root = write_png_pairs(tmp_path, count=10)
    splits = [folders(root, split={"val_cases": None, "test_cases": ["9"], "num_folds": 3, "fold": f}).split_cases(
        folders(root).cases()) for f in range(3)]  # fmt: skip
    vals = [set(s["val"]) for s in splits]
    assert set().union(*vals) == {str(i) for i in range(9)} and sum(map(len, vals)) == 9
    for split in splits:
        assert not set(split["train"]) & set(split["val"]) and split["test"] == ["9"]
    kfold = {"val_cases": None, "test_cases": ["9"], "num_folds": 3, "fold": 1}
    again = folders(root, split=kfold).split_cases(folders(root).cases())
    assert again == splits[1]


def test_unknown_case_names_are_refused(tmp_path: Path) -> None:
    data = folders(write_png_pairs(tmp_path), split={"test_cases": ["5", "50"]})
    with pytest.raises(DatasetError, match=r"unknown cases \['50'\]"):
        data.setup("fit")


def test_image_and_mask_of_different_shape_are_named(tmp_path: Path) -> None:
    root = write_png_pairs(tmp_path)
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(root / "masks" / "2.png")
    with pytest.raises(DatasetError, match=r"case 2 \(image .*images/2.png, mask .*masks/2.png\): image shape"):
        folders(root).setup("fit")


def test_image_and_mask_of_different_geometry_are_named(tmp_path: Path) -> None:
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    mask = np.zeros((16, 16, 8), np.uint8)
    mask[4:8, 4:8, 2:5] = 1
    for i in range(3):
        write_nifti(tmp_path / "images" / f"c{i}.nii.gz", np.random.rand(16, 16, 8).astype(np.float32))
        write_nifti(tmp_path / "masks" / f"c{i}.nii.gz", mask, np.diag([1.5, 1.5, 3.0, 1.0]) if i else np.eye(4))
    data = SegmentationFolders("images", "masks", root=str(tmp_path), spatial_dims=3, patches=Patches(size=[8, 8, 4]),
                               split=Split(val_cases=["c1"], test_cases=["c2"]))  # fmt: skip
    with pytest.raises(DatasetError, match=r"case c0 .*different geometry"):
        data.setup("fit")


def test_mask_values_outside_the_classes_are_named(tmp_path: Path) -> None:
    root = write_png_pairs(tmp_path)
    mask = np.asarray(Image.open(root / "masks" / "1.png")).copy()
    mask[0, 0] = 128
    Image.fromarray(mask).save(root / "masks" / "1.png")
    with pytest.raises(DatasetError, match=r"case 1 .*mask values \[128\] are not among the configured classes"):
        folders(root).setup("fit")


def test_unlisted_mask_values_can_be_made_background(tmp_path: Path) -> None:
    root = write_png_pairs(tmp_path)
    mask = np.asarray(Image.open(root / "masks" / "1.png")).copy()
    mask[0, 0] = 128
    Image.fromarray(mask).save(root / "masks" / "1.png")
    data = folders(root, labels={"unlisted": "background"}, split={"val_cases": ["1"], "test_cases": ["5"]})
    data.setup("fit")
    assert set(data.datasets["val"][0]["label"].unique().tolist()) == {0, 1}


def test_empty_mask_is_refused_unless_allowed(tmp_path: Path) -> None:
    root = write_png_pairs(tmp_path)
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(root / "masks" / "3.png")
    with pytest.raises(DatasetError, match=r"case 3 .*the mask is empty"):
        folders(root).setup("fit")
    folders(root, labels={"allow_empty": True}).setup("fit")


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    root = write_png_pairs(tmp_path)
    (root / "images" / "2.png").write_bytes(b"not a png at all")
    with pytest.raises(DatasetError, match=r"images/2.png: cannot be read as an image .*cannot identify image file"):
        folders(root).setup("fit")


def test_non_image_file_in_a_folder_is_named(tmp_path: Path) -> None:
    root = write_png_pairs(tmp_path)
    (root / "images" / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match=r"notes.txt: not an image file"):
        folders(root).setup("fit")


def test_nan_voxels_are_named(tmp_path: Path) -> None:
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    mask = np.zeros((16, 16, 8), np.uint8)
    mask[4:8, 4:8, 2:5] = 1
    for i in range(3):
        image = np.random.rand(16, 16, 8).astype(np.float32)
        image[1, 2, 3] = np.nan if i == 1 else image[1, 2, 3]
        write_nifti(tmp_path / "images" / f"c{i}.nii.gz", image)
        write_nifti(tmp_path / "masks" / f"c{i}.nii.gz", mask)
    data = SegmentationFolders("images", "masks", root=str(tmp_path), spatial_dims=3,
                               intensity=Intensity(modality="mr"), patches=Patches(size=[8, 8, 4]),
                               split=Split(val_cases=["c1"], test_cases=["c2"]))  # fmt: skip
    with pytest.raises(DatasetError, match=r"case c1 .*NaN/inf voxels"):
        data.setup("fit")


def test_decathlon_layout_reads_dataset_json(tmp_path: Path) -> None:
    for folder in ("imagesTr", "labelsTr"):
        (tmp_path / "Task09_Spleen" / folder).mkdir(parents=True)
    mask = np.zeros((16, 16, 8), np.uint8)
    mask[4:8, 4:8, 2:5] = 1
    training = []
    for i in range(4):
        name = f"spleen_{i}.nii.gz"
        write_nifti(tmp_path / "Task09_Spleen" / "imagesTr" / name, np.random.rand(16, 16, 8).astype(np.float32) * 400)
        write_nifti(tmp_path / "Task09_Spleen" / "labelsTr" / name, mask)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    listing = tmp_path / "Task09_Spleen" / "dataset.json"
    listing.write_text(json.dumps({"name": "Spleen", "training": training, "test": []}))
    data = DecathlonSegmentation("Task09_Spleen", root=str(tmp_path), spatial_dims=3,
                                 intensity=Intensity(modality="ct"), patches=Patches(size=[8, 8, 4]),
                                 split=Split(val_cases=["spleen_2"], test_cases=["spleen_3"]))  # fmt: skip
    data.setup("fit")
    assert data.splits["train"] == ["spleen_0", "spleen_1"] and data.datasets["val"][0]["image"].shape == (1, 16, 16, 8)

    training[1]["label"] = "./labelsTr/missing.nii.gz"
    listing.write_text(json.dumps({"name": "Spleen", "training": training}))
    with pytest.raises(FileNotFoundError, match=r"dataset.json: lists .*missing.nii.gz, which does not exist"):
        DecathlonSegmentation("Task09_Spleen", root=str(tmp_path), spatial_dims=3).setup("fit")


@pytest.mark.parametrize("folder", ["ct_series_jpeg2000", "mr_series_5"])
def test_dicom_series_read_as_one_volume_with_the_header_geometry(folder: str, shared_data: Path) -> None:
    path = shared_data / "dicom" / folder
    headers = sorted(
        (pydicom.dcmread(f, stop_before_pixels=True) for f in path.iterdir()),
        key=lambda h: float(h.InstanceNumber),
    )
    check_dicom_series(path)
    volume = LoadImage(reader="PydicomReader", image_only=True)(str(path))
    positions = np.array([[float(v) for v in h.ImagePositionPatient] for h in headers])
    slice_gap = np.median(np.linalg.norm(np.diff(positions, axis=0), axis=1))
    assert volume.shape == (int(headers[0].Columns), int(headers[0].Rows), len(headers))
    assert volume.pixdim.tolist() == pytest.approx([*map(float, headers[0].PixelSpacing), slice_gap], abs=1e-4)
    assert torch.isfinite(volume).all() and volume.std() > 0  # decoded pixels (JPEG 2000 for the CT)


def test_dicom_folder_mixing_two_series_is_refused(shared_data: Path, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for source in ("ct_series_jpeg2000", "mr_series_5"):
        for file in sorted((shared_data / "dicom" / source).iterdir())[:2]:
            shutil.copy(file, mixed / file.name)
    with pytest.raises(DatasetError, match=r"mixed: expected one DICOM series, found 2"):
        check_dicom_series(mixed)


def test_case_ids_drop_image_suffixes() -> None:
    assert [case_id(Path(p)) for p in ("a/case_1.nii.gz", "b/7.png", "c/series_3")] == ["case_1", "7", "series_3"]


def test_synthetic_volumes_hold_out_the_last_fifths() -> None:
    data = SyntheticSegmentation(spatial_dims=3, image_size=32, num_images=10, patches=Patches(size=[16, 16, 16]))
    data.setup("fit")
    assert data.splits == {"train": [str(i) for i in range(6)], "val": ["6", "7"], "test": ["8", "9"]}
    assert data.datasets["val"][0]["image"].shape == (1, 32, 32, 32)


def test_predicting_an_mr_scan_with_a_ct_model_warns_naming_the_file(shared_data: Path) -> None:
    folder = shared_data / "nifti" / "totalseg_examples"
    load = LoadImageByType(["image"])
    check = CheckPredictImage(in_channels=1, spatial_dims=3, modality="ct")
    with pytest.warns(UserWarning, match=r"example_mr_sm.nii.gz: intensities start at .* does not look like CT"):
        check(load({"image": str(folder / "example_mr_sm.nii.gz")}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check(load({"image": str(folder / "example_ct_sm.nii.gz")}))  # a CT: no warning
    with pytest.warns(UserWarning, match=r"example_ct_sm.nii.gz: .* looks like CT"):
        CheckPredictImage(1, 3, "mr")(load({"image": str(folder / "example_ct_sm.nii.gz")}))
