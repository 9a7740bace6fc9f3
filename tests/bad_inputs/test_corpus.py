"""A corpus of bad inputs, each run through ``medlab`` as a user would type it.

Every case must end the command with exit code 1 (2 for a command line jsonargparse refuses), a one-line message
that names the file or key at fault, no new run folder (so no training step ran) and the earlier run folder beside
it unchanged, byte for byte.
"""

import hashlib
import http.server
import os
import pickle
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import wfdb
from PIL import Image

from datamodules.cifar import write_cifar10
from research.cli import main
from tests.conftest import CPU, EXPERIMENTS, QUICK, REPO
from tests.datamodules.test_ecg import write_record
from tests.datamodules.test_medmnist import write_npz
from tests.datamodules.test_segmentation import write_png_pairs


@dataclass
class Case:
    args: list[str]
    names: list[str]  # what the message must name: files, keys
    exit_code: int = 1
    outputs: list[Path] = field(default_factory=list)  # must not exist afterwards (payload markers, predictions)


@dataclass
class Setting:
    tmp: Path
    runs: Path
    earlier: Path  # a finished quickstart run folder
    shared: Path | None


CASES: dict[str, Callable[[Setting], Case]] = {}


def case(function: Callable[[Setting], Case]) -> Callable[[Setting], Case]:
    CASES[function.__name__] = function
    return function


def run(s: Setting, experiment: str, *args: str) -> list[str]:
    config = str(EXPERIMENTS / f"{experiment}.yaml")
    return ["run", "--config", CPU, "--config", config, f"--experiment.runs_dir={s.runs}", *QUICK,
            "--trainer.max_epochs=1", *args]  # fmt: skip


class Payload:
    """A pickle that would create ``marker`` if it were ever unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


# -- checkpoints ---------------------------------------------------------------------------------------------------
def quickstart_test(s: Setting, ckpt: str) -> list[str]:
    return ["test", "--config", str(s.earlier / "config.yaml"), f"--ckpt_path={ckpt}", *QUICK]


@case
def checkpoint_crafted_pickle_by_local_path(s: Setting) -> Case:
    marker, path = s.tmp / "pwned", s.tmp / "evil.ckpt"
    torch.save({"state_dict": {}, "x": Payload(marker)}, path)
    return Case(quickstart_test(s, str(path)), [str(path), "refused"], outputs=[marker])


@case
def checkpoint_crafted_pickle_by_http_url(s: Setting) -> Case:
    marker, path = s.tmp / "pwned", s.tmp / "evil.ckpt"
    torch.save({"state_dict": {}, "x": Payload(marker)}, path)
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(s.tmp), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/evil.ckpt"
    return Case(quickstart_test(s, url), [url, "local files only"], outputs=[marker])


@case
def checkpoint_crafted_pickle_when_fitting(s: Setting) -> Case:
    marker, path = s.tmp / "pwned", s.tmp / "evil.ckpt"
    torch.save({"state_dict": {}, "x": Payload(marker)}, path)
    return Case(run(s, "quickstart", f"--ckpt_path={path}"), [str(path), "refused"], outputs=[marker])


@case
def checkpoint_missing(s: Setting) -> Case:
    return Case(quickstart_test(s, str(s.tmp / "nowhere.ckpt")), [str(s.tmp / "nowhere.ckpt"), "no such"])


@case
def checkpoint_truncated(s: Setting) -> Case:
    path = s.tmp / "half.ckpt"
    data = (s.earlier / "checkpoints" / "last.ckpt").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return Case(quickstart_test(s, str(path)), [str(path), "not a readable checkpoint"])


@case
def checkpoint_text_file(s: Setting) -> Case:
    path = s.tmp / "notes.ckpt"
    path.write_text("not a checkpoint\n")
    return Case(quickstart_test(s, str(path)), [str(path), "not a readable checkpoint"])


@case
def checkpoint_without_state_dict(s: Setting) -> Case:
    path = s.tmp / "weights.ckpt"
    torch.save({"weights": torch.zeros(3)}, path)
    return Case(quickstart_test(s, str(path)), [str(path), "no state_dict"])


@case
def checkpoint_of_another_network(s: Setting) -> Case:
    path = s.tmp / "other.ckpt"
    checkpoint = torch.load(s.earlier / "checkpoints" / "last.ckpt", weights_only=True)
    key = next(k for k in checkpoint["state_dict"] if k.endswith("weight"))
    checkpoint["state_dict"][key] = torch.zeros(7, 7)
    torch.save(checkpoint, path)
    return Case(quickstart_test(s, str(path)), [str(path), "does not fit", key])


@case
def checkpoint_of_another_task_for_predict(s: Setting) -> Case:
    path = s.tmp / "segmenter.ckpt"
    torch.save({"state_dict": {"net.model.0.conv.weight": torch.zeros(16, 1, 3, 3)}, "epoch": 0}, path)
    args = ["predict", "--config", str(s.earlier / "config.yaml"), f"--ckpt_path={path}", *QUICK]
    return Case(args, [str(path), "does not fit"])


# -- MedMNIST ------------------------------------------------------------------------------------------------------
def medmnist(s: Setting, *args: str) -> list[str]:
    return run(s, "medmnist/resnet18", f"--data.root={s.tmp}", *args)


def npz(s: Setting, **overrides: np.ndarray | None) -> str:
    return str(write_npz(s.tmp, **overrides))


@case
def medmnist_missing_file(s: Setting) -> Case:
    return Case(medmnist(s), [str(s.tmp / "medmnist" / "breastmnist.npz"), "not found"])


@case
def medmnist_truncated_file(s: Setting) -> Case:
    path = Path(npz(s))
    path.write_bytes(path.read_bytes()[:500])
    return Case(medmnist(s), [str(path), "truncated or corrupt"])


@case
def medmnist_not_a_zip(s: Setting) -> Case:
    path = s.tmp / "medmnist" / "breastmnist.npz"
    path.parent.mkdir(parents=True)
    path.write_text("hello")
    return Case(medmnist(s), [str(path)])


@case
def medmnist_missing_key(s: Setting) -> Case:
    return Case(medmnist(s), [npz(s, val_labels=None), "val_labels"])


@case
def medmnist_label_count_mismatch(s: Setting) -> Case:
    return Case(medmnist(s), [npz(s, train_labels=np.zeros(11, np.int64)), "train_labels", "11 labels for 12 images"])


@case
def medmnist_wrong_dtype(s: Setting) -> Case:
    return Case(medmnist(s), [npz(s, train_images=np.zeros((12, 28, 28), np.int16)), "train_images", "dtype"])


@case
def medmnist_wrong_size(s: Setting) -> Case:
    return Case(medmnist(s), [npz(s, val_images=np.zeros((4, 32, 32), np.uint8)), "val_images", "28x28"])


@case
def medmnist_wrong_channels(s: Setting) -> Case:
    return Case(medmnist(s), [npz(s, train_images=np.zeros((12, 28, 28, 3), np.uint8)), "train_images", "shape"])


@case
def medmnist_nan_pixels(s: Setting) -> Case:
    images = np.full((6, 28, 28), 0.5, np.float32)
    images[2, 3, 4] = np.nan
    return Case(medmnist(s), [npz(s, test_images=images), "test_images", "NaN"])


@case
def medmnist_float_pixels_out_of_range(s: Setting) -> Case:
    return Case(medmnist(s), [npz(s, val_images=np.full((4, 28, 28), 3.0, np.float32)), "val_images", "[0, 1]"])


@case
def medmnist_train_label_out_of_range(s: Setting) -> Case:
    return Case(medmnist(s), [npz(s, train_labels=np.arange(12) % 3), "train_labels", "[0, 1]"])


@case
def medmnist_val_label_negative(s: Setting) -> Case:
    return Case(medmnist(s), [npz(s, val_labels=np.array([0, 1, -1, 0])), "val_labels"])


@case
def medmnist_test_label_negative(s: Setting) -> Case:
    return Case(medmnist(s), [npz(s, test_labels=np.array([0, 1, 0, 1, -1, 0])), "test_labels"])


@case
def medmnist_fractional_labels(s: Setting) -> Case:
    return Case(medmnist(s), [npz(s, train_labels=np.arange(12) % 2 + 0.5), "train_labels", "whole-number"])


@case
def medmnist_pickled_labels(s: Setting) -> Case:
    path = npz(s, train_labels=np.array([{"label": 1}] * 12, dtype=object))
    return Case(medmnist(s), [path])


@case
def medmnist_empty_test_split(s: Setting) -> Case:
    path = npz(s, test_images=np.zeros((0, 28, 28), np.uint8), test_labels=np.zeros(0, np.int64))
    return Case(medmnist(s), [path, "test split is empty"])


@case
def medmnist_empty_val_split(s: Setting) -> Case:
    path = npz(s, val_images=np.zeros((0, 28, 28), np.uint8), val_labels=np.zeros(0, np.int64))
    return Case(medmnist(s), [path, "val split is empty"])


@case
def medmnist_val_split_of_one_class(s: Setting) -> Case:
    return Case(medmnist(s), [npz(s, val_labels=np.zeros(4, np.int64)), "val_labels", "only class"])


@case
def medmnist_test_split_of_one_class(s: Setting) -> Case:
    return Case(medmnist(s), [npz(s, test_labels=np.ones(6, np.int64)), "test_labels", "only class"])


@case
def medmnist_unknown_flag(s: Setting) -> Case:
    return Case(medmnist(s, "--data.flag=breastmnist3"), ["data.flag", "breastmnist3"])


@case
def config_unknown_key(s: Setting) -> Case:
    return Case(run(s, "quickstart", "--data.batch_sise=3"), ["batch_sise"], exit_code=2)


# -- CIFAR ---------------------------------------------------------------------------------------------------------
def cifar(s: Setting, *args: str) -> list[str]:
    return run(s, "cifar10_lenet", f"--data.root={s.tmp}", "--data.val_size=20", *args)


@case
def cifar_crafted_batch_without_checksums(s: Setting) -> Case:
    write_cifar10(s.tmp)
    marker, path = s.tmp / "pwned", s.tmp / "cifar10" / "cifar-10-batches-py" / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": Payload(marker), "labels": [0]}))
    return Case(cifar(s, "--data.verify_checksums=false"), [str(path), "refused", "posix.system"], outputs=[marker])


@case
def cifar_checksum_mismatch(s: Setting) -> Case:
    write_cifar10(s.tmp)
    return Case(cifar(s), ["batches.meta", "md5 differs", "verify_checksums"])


@case
def cifar_missing_test_batch(s: Setting) -> Case:
    write_cifar10(s.tmp)
    path = s.tmp / "cifar10" / "cifar-10-batches-py" / "test_batch"
    path.unlink()
    return Case(cifar(s, "--data.verify_checksums=false"), [str(path), "missing"])


@case
def cifar_batch_of_wrong_shape(s: Setting) -> Case:
    write_cifar10(s.tmp)
    path = s.tmp / "cifar10" / "cifar-10-batches-py" / "data_batch_2"
    path.write_bytes(pickle.dumps({"data": np.zeros((20, 100), np.uint8), "labels": [0] * 20}))
    return Case(cifar(s, "--data.verify_checksums=false"), [str(path), "(N, 3072)"])


# -- segmentation folders ------------------------------------------------------------------------------------------
SEGMENTATION = ["--data.image_dir=images", "--data.label_dir=masks", "--data.labels.values=[0, 255]",
                "--data.patches.size=[32, 32]", '--data.split.val_cases=["4"]', '--data.split.test_cases=["5"]',
                "--data.patches.per_image=1"]  # fmt: skip


def segmentation(s: Setting, *args: str) -> list[str]:
    return run(s, "segmentation/isbi2012_unet", f"--data.root={s.tmp}", *SEGMENTATION, *args)


def pairs(s: Setting) -> Path:
    return write_png_pairs(s.tmp)


@case
def segmentation_missing_folder(s: Setting) -> Case:
    return Case(segmentation(s), [str(s.tmp / "images"), "no such folder"])


@case
def segmentation_unmatched_names(s: Setting) -> Case:
    (pairs(s) / "masks" / "3.png").rename(s.tmp / "masks" / "33.png")
    return Case(segmentation(s), [str(s.tmp / "images"), "no pair for", "33"])


@case
def segmentation_non_image_file(s: Setting) -> Case:
    (pairs(s) / "images" / "notes.txt").write_text("x")
    return Case(segmentation(s), [str(s.tmp / "images" / "notes.txt"), "not an image file"])


@case
def segmentation_shape_mismatch(s: Setting) -> Case:
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(pairs(s) / "masks" / "2.png")
    return Case(segmentation(s), [str(s.tmp / "masks" / "2.png"), "image shape"])


@case
def segmentation_unknown_mask_value(s: Setting) -> Case:
    mask = np.asarray(Image.open(pairs(s) / "masks" / "1.png")).copy()
    mask[0, 0] = 7
    Image.fromarray(mask).save(s.tmp / "masks" / "1.png")
    return Case(segmentation(s), [str(s.tmp / "masks" / "1.png"), "mask values [7]"])


@case
def segmentation_empty_mask(s: Setting) -> Case:
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(pairs(s) / "masks" / "0.png")
    return Case(segmentation(s), [str(s.tmp / "masks" / "0.png"), "data.labels.allow_empty"])


@case
def segmentation_rgb_image_among_greyscale(s: Setting) -> Case:
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(pairs(s) / "images" / "3.png")
    return Case(segmentation(s), [str(s.tmp / "images" / "3.png"), "3 channels (RGB)", "data.in_channels=1"])


@case
def segmentation_rgb_mask(s: Setting) -> Case:
    mask = np.zeros((48, 48, 3), np.uint8)
    mask[10:20, 10:20] = 255
    Image.fromarray(mask).save(pairs(s) / "masks" / "3.png")
    return Case(segmentation(s), [str(s.tmp / "masks" / "3.png"), "the mask has 3 channels"])


@case
def segmentation_corrupt_png(s: Setting) -> Case:
    (pairs(s) / "images" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return Case(segmentation(s), [str(s.tmp / "images" / "2.png"), "cannot be read as an image"])


@case
def segmentation_empty_file(s: Setting) -> Case:
    (pairs(s) / "masks" / "1.png").write_bytes(b"")
    return Case(segmentation(s), [str(s.tmp / "masks" / "1.png"), "cannot be read as an image"])


@case
def segmentation_nan_pixels(s: Setting) -> Case:
    image = np.random.default_rng(0).random((48, 48)).astype(np.float32)
    image[5, 5] = np.nan
    pairs(s)
    (s.tmp / "images" / "2.png").unlink()
    Image.fromarray(image, mode="F").save(s.tmp / "images" / "2.tif")
    return Case(segmentation(s), [str(s.tmp / "images" / "2.tif"), "NaN"])


def nifti_pairs(s: Setting, shape: tuple[int, ...], suffix: str, mask_affine: dict | None = None) -> None:
    """Six NIfTI image/mask pairs of ``shape`` (a square of 255 in each mask); ``mask_affine`` overrides some masks'."""
    for folder in ("images", "masks"):
        (s.tmp / folder).mkdir()
    for i in range(6):
        mask = np.zeros(shape, np.uint8)
        mask[4:9, 4:9] = 255
        image = np.random.rand(*shape).astype(np.float32)
        nib.save(nib.Nifti1Image(image, np.eye(4)), s.tmp / "images" / f"{i}{suffix}")
        nib.save(nib.Nifti1Image(mask, (mask_affine or {}).get(i, np.eye(4))), s.tmp / "masks" / f"{i}{suffix}")


@case
def segmentation_3d_image_for_a_2d_model(s: Setting) -> Case:
    nifti_pairs(s, (16, 16, 4), ".nii.gz")
    return Case(segmentation(s), [str(s.tmp / "images" / "0.nii.gz"), "3D image", "data.spatial_dims=2"])


@case
def segmentation_geometry_mismatch(s: Setting) -> Case:
    nifti_pairs(s, (16, 16), ".nii", mask_affine={1: np.diag([2.0, 2.0, 1.0, 1.0])})
    return Case(segmentation(s), [str(s.tmp / "masks" / "1.nii"), "different geometry"])


@case
def segmentation_unknown_case_name(s: Setting) -> Case:
    pairs(s)
    unknown = segmentation(s, '--data.split.val_cases=["4", "44"]')
    return Case(unknown, ["data.split.test_cases / data.split.val_cases", "44"])


@case
def segmentation_no_test_cases_for_run(s: Setting) -> Case:
    pairs(s)
    return Case(segmentation(s, "--data.split.test_cases=[]"), ["SegmentationFolders", "data.split.test_cases"])


@case
def segmentation_dicom_folder_mixing_series(s: Setting) -> Case:
    pairs(s)
    folder = s.tmp / "images" / "6"
    folder.mkdir()
    for source in ("ct_series_jpeg2000", "mr_series_5"):
        for file in sorted((s.shared / "dicom" / source).iterdir())[:2]:
            shutil.copy(file, folder / f"{source}_{file.name}")
    return Case(segmentation(s), [str(folder), "expected one DICOM series"])


@case
def segmentation_non_dicom_file_in_a_dicom_folder(s: Setting) -> Case:
    pairs(s)
    folder = s.tmp / "images" / "6"
    shutil.copytree(s.shared / "dicom" / "mr_series_5", folder)
    (folder / "readme.txt").write_text("x")
    return Case(segmentation(s), [str(folder / "readme.txt"), "not a DICOM file"])


# -- predict -------------------------------------------------------------------------------------------------------
def predict(s: Setting, paths: list[Path], experiment: str = "segmentation/isbi2012_unet") -> Case:
    out = s.tmp / "predicted"
    listed = "[" + ", ".join(f'"{p}"' for p in paths) + "]"
    args = ["predict", "--config", CPU, "--config", str(EXPERIMENTS / f"{experiment}.yaml"), *QUICK,
            f"--data.prediction.paths={listed}", f"--data.prediction.output_dir={out}"]  # fmt: skip
    return Case(args, [], outputs=[out])


def with_names(result: Case, *names: str) -> Case:
    result.names = list(names)
    return result


@case
def predict_3d_nifti_with_a_2d_model(s: Setting) -> Case:
    path = s.tmp / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.random.rand(32, 32, 8).astype(np.float32), np.eye(4)), path)
    return with_names(predict(s, [path]), str(path), "3D image")


@case
def predict_dicom_series_with_a_2d_model(s: Setting) -> Case:
    path = s.shared / "dicom" / "mr_series_5"
    return with_names(predict(s, [path]), str(path), "3D image")


@case
def predict_rgb_png_with_a_greyscale_model(s: Setting) -> Case:
    path = s.tmp / "photo.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(path)
    return with_names(predict(s, [path]), str(path), "3 channels (RGB)")


@case
def predict_png_with_a_3d_model(s: Setting) -> Case:
    path = s.tmp / "slice.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(path)
    return with_names(predict(s, [path], "segmentation/synthetic3d_unet"), str(path), "2D image")


def classify(s: Setting, command: str, *args: str) -> list[str]:
    """``medlab predict|explain`` with the earlier quickstart run's config and checkpoint."""
    return [command, "--config", str(s.earlier / "config.yaml"), f"--ckpt_path={s.earlier / 'checkpoints/last.ckpt'}",
            *QUICK, *args]  # fmt: skip


@case
def predict_classifier_on_an_empty_folder(s: Setting) -> Case:
    (s.tmp / "empty").mkdir()
    out = s.tmp / "predicted"
    args = classify(s, "predict", f"--data.prediction.paths=[{s.tmp / 'empty'}]", f"--data.prediction.output_dir={out}")
    return Case(args, [str(s.tmp / "empty"), "no input files"], outputs=[out])


@case
def predict_classifier_on_only_unreadable_files(s: Setting) -> Case:
    (s.tmp / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    out = s.tmp / "predicted"
    args = classify(s, "predict", f"--data.prediction.paths=[{s.tmp / 'broken.png'}]",
                    f"--data.prediction.output_dir={out}")  # fmt: skip
    return Case(args, ["none of the 1 inputs could be read"], outputs=[out])


@case
def explain_with_an_unknown_layer(s: Setting) -> Case:
    out = s.tmp / "explained"
    return Case(classify(s, "explain", "--layer=features.99", f"--output={out}"), ["features.99", "no such layer"],
                outputs=[out])  # fmt: skip


@case
def explain_with_a_checkpoint_of_another_network(s: Setting) -> Case:
    out = s.tmp / "explained"
    args = ["explain", "--config", CPU, "--config", str(EXPERIMENTS / "medmnist3d/synthetic_cnn_gru.yaml"), *QUICK,
            f"--ckpt_path={s.earlier / 'checkpoints/last.ckpt'}", f"--output={out}"]  # fmt: skip
    return Case(args, ["does not fit"], outputs=[out])


@case
def predict_missing_file(s: Setting) -> Case:
    return with_names(predict(s, [s.tmp / "gone.png"]), str(s.tmp / "gone.png"), "do not exist")


@case
def predict_mixed_list_writes_nothing(s: Setting) -> Case:
    good, bad = s.tmp / "good.png", s.tmp / "bad.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(good)
    bad.write_bytes(b"garbage")
    return with_names(predict(s, [good, bad]), str(bad), "cannot be read as an image")


@case
def predict_crafted_npy(s: Setting) -> Case:
    marker, path = s.tmp / "pwned", s.tmp / "scan.npy"
    np.save(path, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    result = with_names(predict(s, [path]), str(path), "unsupported image file")
    result.outputs.append(marker)
    return result


@case
def predict_unsupported_suffix(s: Setting) -> Case:
    path = s.tmp / "scan.webp"
    path.write_bytes(b"RIFF")
    return with_names(predict(s, [path]), str(path), "unsupported image file")


# -- ECG -----------------------------------------------------------------------------------------------------------
def mitbih(s: Setting, *args: str) -> list[str]:
    return run(s, "ecg/mitbih_lstm", f"--data.root={s.tmp}", "--data.folder=ecg", '--data.train_records=["r1"]',
               '--data.val_records=["r2"]', '--data.test_records=["r3"]', *args)  # fmt: skip


def records(s: Setting, **kwargs) -> Path:
    for name in ("r1", "r2", "r3"):
        write_record(s.tmp / "ecg", name, **kwargs)
    return s.tmp / "ecg"


@case
def mitbih_missing_annotations(s: Setting) -> Case:
    (records(s) / "r2.atr").unlink()
    return Case(mitbih(s), [str(s.tmp / "ecg" / "r2.atr"), "missing"])


@case
def mitbih_signal_shorter_than_header(s: Setting) -> Case:
    dat = records(s) / "r1.dat"
    dat.write_bytes(dat.read_bytes()[:1000])
    return Case(mitbih(s), [str(s.tmp / "ecg" / "r1")])


@case
def mitbih_other_sampling_rate(s: Setting) -> Case:
    records(s, fs=250)
    return Case(mitbih(s), [str(s.tmp / "ecg" / "r1"), "250 Hz", "data.sampling_rate"])


@case
def mitbih_record_shorter_than_a_beat(s: Setting) -> Case:
    records(s)
    write_record(s.tmp / "ecg", "r3", seconds=0.5)
    return Case(mitbih(s), [str(s.tmp / "ecg" / "r3"), "shorter than one beat window"])


@case
def mitbih_lead_all_nan(s: Setting) -> Case:
    dat = records(s) / "r2.dat"
    samples = np.fromfile(dat, "<i2").reshape(-1, 2)
    samples[:, 0] = -32768  # WFDB's "no sample" value in format 16: the lead dropped out for the whole record
    samples.tofile(dat)
    return Case(mitbih(s), [str(s.tmp / "ecg" / "r2"), "all NaN"])


@case
def mitbih_record_in_two_splits(s: Setting) -> Case:
    records(s)
    return Case(mitbih(s, '--data.test_records=["r1"]'), ["data (datamodules.MITBIH)", "record r1", "split by patient"])


@case
def mitbih_validation_patient_of_one_class(s: Setting) -> Case:
    folder = records(s)
    annotation = wfdb.rdann(str(folder / "r2"), "atr")
    wfdb.wrann("r2", "atr", annotation.sample, symbol=["N"] * len(annotation.sample), write_dir=str(folder))
    return Case(mitbih(s), ["data.val_records ['r2']", "only class ['N']"])


def cinc(s: Setting, count: int = 12, rate: int = 300, labels: str = "NAO~") -> list[str]:
    folder = s.tmp / "ecg" / "cinc"
    folder.mkdir(parents=True)
    rows = []
    for i in range(count):
        t = np.arange(10 * rate) / rate
        wfdb.wrsamp(f"A{i:05d}", fs=rate, units=["mV"], sig_name=["ECG"], p_signal=np.sin(2 * np.pi * t)[:, None],
                    fmt=["16"], write_dir=str(folder))  # fmt: skip
        rows.append(f"A{i:05d},{labels[i % len(labels)]}")
    (folder / "REFERENCE.csv").write_text("\n".join(rows) + "\n")
    return run(s, "ecg/cinc2017_gru", f"--data.root={s.tmp}", "--data.folder=ecg/cinc", "--data.num_folds=3")


@case
def cinc_unknown_label(s: Setting) -> Case:
    return Case(cinc(s, labels="NAOX"), [str(s.tmp / "ecg" / "cinc"), "unknown label: 3", "A00003 ('X')"])


@case
def cinc_missing_header(s: Setting) -> Case:
    args = cinc(s)
    (s.tmp / "ecg" / "cinc" / "A00004.hea").unlink()
    (s.tmp / "ecg" / "cinc" / "A00004.dat").rename(s.tmp / "ecg" / "cinc" / "A00004.mat")
    return Case(args, [str(s.tmp / "ecg" / "cinc"), "missing .hea: 1 (A00004)"])


@case
def cinc_unlabelled_record(s: Setting) -> Case:
    args = cinc(s)
    reference = s.tmp / "ecg" / "cinc" / "REFERENCE.csv"
    reference.write_text("\n".join(reference.read_text().splitlines()[1:]) + "\n")
    return Case(args, [str(s.tmp / "ecg" / "cinc"), "no label: 1 (A00000)"])


@case
def cinc_missing_reference(s: Setting) -> Case:
    args = cinc(s)
    (s.tmp / "ecg" / "cinc" / "REFERENCE.csv").unlink()
    return Case(args, [str(s.tmp / "ecg" / "cinc" / "REFERENCE.csv"), "missing"])


@case
def cinc_other_sampling_rate(s: Setting) -> Case:
    return Case(cinc(s, rate=250), [str(s.tmp / "ecg" / "cinc" / "A00000"), "250 Hz"])


@case
def cinc_too_few_records(s: Setting) -> Case:
    return Case(cinc(s, count=4), [str(s.tmp / "ecg" / "cinc" / "REFERENCE.csv"), "too few"])


# -- resuming ------------------------------------------------------------------------------------------------------
@case
def resume_with_a_validation_split_of_one_class(s: Setting) -> Case:
    args = ["run", "--config", str(s.earlier / "config.yaml"), "--ckpt_path=last", "--data.num_val=1", *QUICK]
    return Case(args, ["SyntheticLesions", "val split holds only class"])


@case
def resume_from_a_checkpoint_that_was_cut_short(s: Setting) -> Case:
    copy = s.runs / "quickstart" / "copy-of-earlier"
    shutil.copytree(s.earlier, copy)
    last = copy / "checkpoints" / "last.ckpt"
    last.unlink()  # a hard link to the best: replace it, not its target
    last.write_bytes((s.earlier / "checkpoints" / "last.ckpt").read_bytes()[:4096])
    return Case(["run", "--config", str(copy / "config.yaml"), "--ckpt_path=last", *QUICK],
                [str(last), "not a readable checkpoint"])  # fmt: skip


# -- the test ------------------------------------------------------------------------------------------------------
def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    runs = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv("WANDB_MODE", "offline")
        main(run(Setting(runs, runs, runs, None), "quickstart", "--data.num_train=64", "--data.num_val=32",
                 "--data.num_test=32"))  # fmt: skip
    (earlier,) = (runs / "quickstart").iterdir()
    yield runs, earlier


def test_the_corpus_is_large_enough() -> None:
    print(f"{len(CASES)} bad-input cases")
    assert len(CASES) >= 50


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_stops_before_training_naming_the_file(
    name: str, earlier_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture, request
) -> None:
    runs, earlier = earlier_run
    needs_shared = "dicom" in name
    shared = request.getfixturevalue("shared_data") if needs_shared else None
    setting = Setting(tmp_path, runs, earlier, shared)
    bad = CASES[name](setting)
    before = snapshot(runs)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        main(bad.args)
    err = capsys.readouterr().err
    assert stopped.value.code == bad.exit_code, err[-3000:]
    if bad.exit_code == 1:
        (message,) = [line for line in err.splitlines() if line.startswith("medlab: error: ")]
        assert "Traceback" not in err
    else:  # jsonargparse's own usage error
        message = err
    for fragment in bad.names:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert snapshot(runs) == before, "a run folder was created or an earlier one changed"
    for output in bad.outputs:
        assert not output.exists(), f"{output} was written"


def test_a_data_error_is_one_short_message_and_exit_code_1_in_a_real_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a user sees in a terminal: the message, not a traceback (``MEDLAB_DEBUG=1`` brings it back)."""
    args = [
        sys.executable,
        "-m",
        "research.cli",
        *run(
            Setting(tmp_path, tmp_path / "runs", tmp_path, None),
            "medmnist/resnet18",
            f"--data.root={tmp_path}",
        ),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}
    quiet = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 1 and "Traceback" not in quiet.stderr
    assert quiet.stderr.strip().splitlines()[-2].startswith(f"medlab: error: MedMNIST file not found: {tmp_path}")
    monkeypatch.setenv("MEDLAB_DEBUG", "1")  # the error is raised, so Python prints its traceback (in-process here)
    with pytest.raises(FileNotFoundError, match="MedMNIST file not found"):
        main(args[3:])
    assert not (tmp_path / "runs").exists()
