"""No patient identifier leaves through medlab: DICOM series and MIT-BIH records carrying a planted, unique patient
name, ID, birth date and comment go through ``medlab run``, ``predict``, ``explain`` and ``export``; then every file
those commands wrote (run folders, W&B offline files, predictions, explanations, exported models) and everything
they printed is searched for each planted value. The segmentation trains on copies of the shared MR series (with
threshold masks: the shared series come without) and the MIT-BIH model on three records (train, validation, test)."""

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from monai.data import PydicomReader
from monai.transforms import LoadImage

from research.cli import main
from research.tracking import finish_wandb
from tests.conftest import QUICK

PLANTED = {
    "name": "Qzxwvplanted^Jqkmirthe",
    "id": "PLNT8675309Q",
    "birth": "19230405",
    "comment": "Plantedcomment Xyzzy",
}
SEARCHED = ["Qzxwvplanted", "Jqkmirthe", "PLNT8675309Q", "19230405", "1923-04-05", "Plantedcomment", "Xyzzy"]


def plant(path: Path) -> None:
    dataset = pydicom.dcmread(path)
    dataset.PatientName, dataset.PatientID = PLANTED["name"], PLANTED["id"]
    dataset.PatientBirthDate, dataset.PatientComments = PLANTED["birth"], PLANTED["comment"]
    dataset.ImageComments = PLANTED["comment"]
    dataset.save_as(path, enforce_file_format=True)


def medlab(*args: str) -> None:
    try:
        main([*args, *QUICK])
    finally:
        finish_wandb()


def hits(folder: Path) -> list[str]:
    """Each file under ``folder`` holding a planted value (as text or bytes), with the value."""
    found = []
    for path in (p for p in folder.rglob("*") if p.is_file()):
        content = path.read_bytes()
        found += [f"{path}: {value}" for value in SEARCHED if value.encode() in content]
    return found


@pytest.fixture
def planted_data(tmp_path: Path, shared_data: Path) -> Path:
    data = tmp_path / "data"
    for folder in ("images", "masks"):
        (data / folder).mkdir(parents=True)
    # Four cases, each a copy of the shared MR series with planted headers; a mask from a threshold, as NIfTI in the
    # series' geometry (the shared series come without masks).
    series = shared_data / "dicom" / "mr_series_5"
    volume = LoadImage(reader=PydicomReader(), image_only=True)(str(series))
    mask = (np.asarray(volume) > float(volume.mean())).astype(np.uint8) * 255
    for i in range(4):
        shutil.copytree(series, data / "images" / str(i))
        nib.save(nib.Nifti1Image(mask, np.asarray(volume.affine)), data / "masks" / f"{i}.nii.gz")
    for path in data.rglob("*.dcm"):
        plant(path)
    (data / "ecg").mkdir()
    comment = f"# {PLANTED['comment']} {PLANTED['name']} {PLANTED['id']} born {PLANTED['birth']}\n"
    for record in ("100", "119", "232"):
        for suffix in (".dat", ".atr"):
            shutil.copy(shared_data / "ecg" / "mitdb" / f"{record}{suffix}", data / "ecg")
        header = (shared_data / "ecg" / "mitdb" / f"{record}.hea").read_text()
        (data / "ecg" / f"{record}.hea").write_text(header + comment)
    return data


def test_no_planted_identifier_reaches_any_output_or_the_console(planted_data: Path, tmp_path: Path, capfd) -> None:
    data, out = planted_data, tmp_path / "outputs"
    assert hits(data)  # the values are there to be found
    runs = out / "runs"
    medlab("run", "--config", "experiments/trainer/cpu.yaml", "--config", "experiments/segmentation/isbi2012_unet.yaml",
           f"--experiment.runs_dir={runs}", f"--data.root={data}", "--data.image_dir=images", "--data.label_dir=masks",
           "--data.labels.values=[0, 255]", "--data.patches.size=[4, 16, 16]", "--data.patches.augment=false",
           '--data.split.val_cases=["2"]', '--data.split.test_cases=["3"]', "--data.patches.per_image=1",
           "--data.batch_size=2",
           "--trainer.max_epochs=1", "--model.net.init_args.channels=[4, 8]", "--model.net.init_args.strides=[2]",
           "--model.net.init_args.num_res_units=0", "--data.spatial_dims=3",
           "--model.net.init_args.spatial_dims=3")  # fmt: skip
    (segmentation,) = (runs / "segmentation" / "isbi2012_unet").iterdir()
    ckpt = f"--ckpt_path={segmentation / 'checkpoints' / 'last.ckpt'}"
    series = data / "images" / "3"
    medlab("predict", "--config", str(segmentation / "config.yaml"), ckpt, f"--data.prediction.paths=[{series}]",
           f"--data.prediction.output_dir={out / 'masks'}")  # fmt: skip

    medlab("run", "--config", "experiments/trainer/cpu.yaml", "--config", "experiments/ecg/mitbih_lstm.yaml",
           f"--experiment.runs_dir={runs}", f"--data.root={data}", "--data.folder=ecg", '--data.train_records=["100"]',
           '--data.val_records=["119"]', '--data.test_records=["232"]', "--trainer.max_epochs=1",
           "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=2")  # fmt: skip
    (ecg,) = (runs / "ecg" / "mitbih_lstm").iterdir()
    ckpt = f"--ckpt_path={ecg / 'checkpoints' / 'last.ckpt'}"
    medlab("predict", "--config", str(ecg / "config.yaml"), ckpt, f"--data.prediction.paths=[{data / 'ecg' / '232'}]",
           f"--data.prediction.output_dir={out / 'beats'}")  # fmt: skip
    medlab("explain", "--config", str(ecg / "config.yaml"), ckpt, "--limit=16", "--method=occlusion")
    medlab("export", "--config", str(ecg / "config.yaml"), ckpt)

    written = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert any(p.suffix == ".wandb" for p in written) and any(p.name == "model.onnx" for p in written)
    assert any(p.name == "predictions.csv" for p in written) and any("explanations" in p.parts for p in written)
    assert len(list((out / "masks").iterdir())) == 1
    assert hits(out) == []
    printed = capfd.readouterr()
    assert [value for value in SEARCHED if value in printed.out + printed.err] == []
