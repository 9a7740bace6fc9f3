"""Every image suffix the README documents, written by its own library, trains a 1-epoch segmentation and predicts:
the predicted mask comes back in the input's format (``mask_suffix``) with the input's shape and geometry."""

from collections.abc import Callable
from pathlib import Path

import itk
import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from datamodules.readers import IMAGE_SUFFIXES, LoadImageByType, mask_suffix
from research.cli import main
from tests.conftest import QUICK

SIZE = (40, 32)  # rows, columns: not square, so a transposed mask would not fit


def scan(index: int) -> tuple[np.ndarray, np.ndarray]:
    """A noisy image with a bright square, and its mask (0 background, 255 square)."""
    rng = np.random.default_rng(index)
    mask = np.zeros(SIZE, np.uint8)
    mask[8 + index : 20 + index, 6:18] = 255
    image = (rng.integers(0, 80, SIZE) + (mask > 0) * 150).astype(np.uint8)
    return image, mask


def pil_writer(suffix: str, mode: Callable[[np.ndarray], np.ndarray] = lambda a: a) -> Callable:
    return lambda path, array, is_mask: Image.fromarray(array if is_mask else mode(array)).save(f"{path}{suffix}")


def itk_writer(suffix: str) -> Callable:
    def write(path: Path, array: np.ndarray, is_mask: bool) -> None:
        image = itk.image_from_array(array if is_mask else array.astype(np.float32))
        image.SetSpacing([0.7, 0.5])
        image.SetOrigin([10.0, -4.0])
        itk.imwrite(image, f"{path}{suffix}")

    return write


def nifti_writer(suffix: str) -> Callable:
    def write(path: Path, array: np.ndarray, is_mask: bool) -> None:
        nib.save(nib.Nifti1Image(array if is_mask else array.astype(np.float32), np.diag([0.5, 0.7, 1, 1])),
                 f"{path}{suffix}")  # fmt: skip

    return write


def dicom_slice(path: Path, array: np.ndarray, series: str, position: float = 0.0) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "CT", series, "1.2.3.4"
    ds.Rows, ds.Columns = array.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelSpacing, ds.SliceThickness = [0.5, 0.7], 2.0
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, position], [1, 0, 0, 0, 1, 0]
    ds.InstanceNumber = int(position / 2) + 1
    ds.PixelData = array.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def dicom_file(path: Path, array: np.ndarray, is_mask: bool) -> None:
    dicom_slice(Path(f"{path}.dcm"), array, generate_uid())


def dicom_series(path: Path, array: np.ndarray, is_mask: bool) -> None:
    path.mkdir()
    series = generate_uid()
    for k in range(4):
        dicom_slice(path / f"slice{k}.dcm", array, series, position=2.0 * k)


# suffix -> (image writer, mask writer, data settings)
FORMATS: dict[str, tuple[Callable, Callable, list[str]]] = {
    ".png": (pil_writer(".png"), pil_writer(".png"), []),
    ".jpg": (pil_writer(".jpg"), pil_writer(".png"), []),  # JPEG masks would be lossy: masks stay PNG
    ".jpeg": (pil_writer(".jpeg"), pil_writer(".png"), []),
    ".bmp": (pil_writer(".bmp"), pil_writer(".bmp"), []),
    ".tif": (pil_writer(".tif"), pil_writer(".tif"), []),
    ".tiff (16-bit)": (pil_writer(".tiff", lambda a: a.astype(np.uint16) * 250), pil_writer(".tiff"), []),
    ".tif (RGB)": (
        pil_writer(".tif", lambda a: np.stack([a, a // 2, a], -1)),
        pil_writer(".tif"),
        ["--data.in_channels=3"],
    ),  # fmt: skip
    ".gif": (pil_writer(".gif"), pil_writer(".gif"), []),
    ".nii": (nifti_writer(".nii"), nifti_writer(".nii"), []),
    ".nii.gz": (nifti_writer(".nii.gz"), nifti_writer(".nii.gz"), []),
    ".mha": (itk_writer(".mha"), itk_writer(".mha"), []),
    ".nrrd": (itk_writer(".nrrd"), itk_writer(".nrrd"), []),
    ".dcm": (dicom_file, dicom_file, []),
    "DICOM series": (
        dicom_series,
        dicom_series,
        ["--data.spatial_dims=3", "--data.patches.size=[16, 16, 4]", "--model.net.init_args.spatial_dims=3"],
    ),  # fmt: skip
}


def test_every_documented_suffix_is_in_the_round_trip() -> None:
    covered = {name.split(" ")[0] for name in FORMATS} - {"DICOM"}
    assert covered == set(IMAGE_SUFFIXES)


@pytest.mark.parametrize("name", list(FORMATS))
def test_each_format_trains_a_segmentation_and_predicts_in_its_own_format_and_geometry(
    name: str, run_medlab, tmp_path: Path
) -> None:
    write_image, write_mask, settings = FORMATS[name]
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    for i in range(4):
        image, mask = scan(i)
        write_image(tmp_path / "images" / str(i), image, False)
        write_mask(tmp_path / "masks" / str(i), mask, True)
    run_dir = run_medlab(
        "segmentation/isbi2012_unet", f"--data.root={tmp_path}", "--data.image_dir=images", "--data.label_dir=masks",
        "--data.labels.values=[0, 255]", "--data.patches.size=[16, 16]", '--data.split.val_cases=["2"]',
        '--data.split.test_cases=["3"]', "--data.patches.per_image=1", "--data.batch_size=2", "--trainer.max_epochs=1",
        "--model.net.init_args.channels=[4, 8]", "--model.net.init_args.strides=[2]",
        "--model.net.init_args.num_res_units=0", *settings,
    )  # fmt: skip
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()

    (source,) = [p for p in (tmp_path / "images").iterdir() if p.name.split(".")[0] == "3"]
    out = tmp_path / "predicted"
    main(["predict", "--config", str(run_dir / "config.yaml"), f"--ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
          *QUICK, f'--data.prediction.paths=["{source}"]', f"--data.prediction.output_dir={out}"])  # fmt: skip
    (written,) = out.iterdir()
    assert written.name.endswith(mask_suffix(source)) and written.name.startswith("3")
    load = LoadImageByType(["image"])
    image, mask = load({"image": str(source)})["image"], load({"image": str(written)})["image"]
    assert mask.shape[1:] == image.shape[1:] and mask.shape[0] == 1
    assert torch.allclose(mask.affine.double(), image.affine.double(), atol=1e-4)
    assert set(torch.unique(mask).tolist()) <= {0, 255}
