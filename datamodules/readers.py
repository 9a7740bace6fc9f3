"""One reader per documented image suffix, chosen explicitly: MONAI's ``LoadImage`` would otherwise try its readers
in turn and fall through to the DICOM reader for a suffix PIL does not claim (TIF, GIF), failing with a DICOM error.

| suffix | reader | masks are written back as |
|---|---|---|
| .png .bmp .tif .tiff | PIL (8/16-bit greyscale, RGB) | the same suffix |
| .jpg .jpeg .gif | PIL | .png (JPEG is lossy and would change label values; MONAI writes no GIF) |
| .nii .nii.gz | nibabel | the same suffix, with the source affine |
| .mha .nrrd | ITK (``itk-io``, MONAI's ``ITKReader``) | the same suffix, with the source geometry |
| .dcm, a folder of one DICOM series | pydicom | .nii.gz with the series' affine (DICOM SEG is not written) |
"""

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from monai import transforms as mt
from monai.data import ImageReader, ITKReader, NibabelReader, PILReader, PydicomReader
from PIL import Image

from datamodules.validation import DatasetError

PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif")
IMAGE_SUFFIXES = (*PIL_SUFFIXES, ".nii", ".nii.gz", ".mha", ".nrrd", ".dcm")
MASK_SUFFIX = {".jpg": ".png", ".jpeg": ".png", ".gif": ".png", ".dcm": ".nii.gz"}


def image_suffix(path: str | Path) -> str | None:
    """The documented suffix ``path`` ends with (``.nii.gz`` before ``.gz``), lower case; None for a folder or
    an undocumented suffix."""
    name = Path(path).name.lower()
    return next((s for s in sorted(IMAGE_SUFFIXES, key=len, reverse=True) if name.endswith(s)), None)


def mask_suffix(path: str | Path) -> str:
    """The suffix a mask predicted for ``path`` is written with (see the module's table)."""
    suffix = image_suffix(path)
    return ".nii.gz" if suffix is None else MASK_SUFFIX.get(suffix, suffix)


def _plain_pil(image: Image.Image) -> Image.Image:
    """Palette (GIF) and bilevel images as the grey levels or colours they show, not as palette indices."""
    if image.mode == "1":
        return image.convert("L")
    if image.mode == "P":
        rgb = np.asarray(image.convert("RGB"))
        grey = (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
        return image.convert("L") if grey else image.convert("RGB")
    return image


def reader_for(path: str | Path) -> ImageReader:
    """The reader for one file or DICOM series folder, or a ``DatasetError`` naming the path and the suffixes."""
    path = Path(path)
    suffix = image_suffix(path)
    if path.is_dir() or suffix == ".dcm":
        return PydicomReader()
    if suffix in PIL_SUFFIXES:
        return PILReader(converter=_plain_pil)
    if suffix in (".nii", ".nii.gz"):
        return NibabelReader()
    if suffix in (".mha", ".nrrd"):
        return ITKReader()
    raise DatasetError(
        f"{path}: unsupported image file (expected {', '.join(IMAGE_SUFFIXES)} or a folder of one DICOM series)"
    )


def check_deidentified(path: Path) -> None:
    """Every DICOM file of ``path`` (a file or a series folder) marked de-identified, or a ``DatasetError`` naming the
    first that is not."""
    for file in sorted(path.iterdir()) if path.is_dir() else [path]:
        try:
            header = pydicom.dcmread(file, stop_before_pixels=True, specific_tags=["PatientIdentityRemoved"])
        except Exception as error:
            raise DatasetError(f"{file}: not a readable DICOM file ({type(error).__name__})") from error
        if str(header.get("PatientIdentityRemoved", "")).upper() != "YES":
            raise DatasetError(f"{file}: not marked de-identified (PatientIdentityRemoved is not YES) and "
                               "data.require_deidentified is true; de-identify it with medlab deid first")  # fmt: skip


class LoadImageByType(mt.MapTransform):
    """``LoadImaged`` with the reader chosen by each file's suffix (``reader_for``); channel first, with metadata.

    Args:
        keys: the keys holding file paths.
        dtype: the values' type (None: as stored in the file).
        require_deidentified: refuse a DICOM file not marked de-identified (PatientIdentityRemoved = YES).
    """

    def __init__(self, keys: list[str], dtype: Any = np.float32, require_deidentified: bool = False) -> None:
        super().__init__(keys)
        self.load = mt.LoadImage(ensure_channel_first=True, image_only=True, dtype=dtype)
        self.require_deidentified = require_deidentified

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        data = dict(data)
        for key in self.key_iterator(data):
            path = data[key]
            reader = reader_for(path)
            if self.require_deidentified and isinstance(reader, PydicomReader):
                check_deidentified(Path(path))
            try:  # a reader given at call time is the only one tried (no fall-through to the others)
                data[key] = self.load(path, reader=reader)
            except Exception as error:
                raise DatasetError(
                    f"{path}: cannot be read as an image by {type(reader).__name__} ({type(error).__name__}: "
                    f"{str(error).splitlines()[0][:300]})"
                ) from error
        return data
