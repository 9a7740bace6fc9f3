"""``medlab predict`` on new files: images in any documented format and ECG records, prepared as the run's test data
is, so the probabilities are the ones ``medlab test`` computes for the same images and beats."""

import csv
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from pydicom.uid import generate_uid
from torchmetrics.classification import BinaryAUROC

from datamodules import MedMNIST, SyntheticLesions, SyntheticVolumes
from research.cli import cli, main
from research.tracking import finish_wandb
from tests.conftest import CPU, EXPERIMENTS, QUICK, read_item_results, read_summary
from tests.datamodules.test_formats import dicom_slice

SMALL = ["--data.num_train=200", "--data.num_val=50", "--data.num_test=60", "--trainer.max_epochs=1"]


def predict(run_dir: Path, inputs: list[Path], output: Path, *args: str) -> list[dict[str, str]]:
    try:
        main(["predict", "--config", str(run_dir / "config.yaml"), f"--ckpt_path={run_dir / 'checkpoints/last.ckpt'}",
              f"--data.prediction.paths=[{', '.join(str(p) for p in inputs)}]",
              f"--data.prediction.output_dir={output}", *args])  # fmt: skip
    finally:
        finish_wandb()
    with (output / "predictions.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small quickstart run for the tests of image files (each writes into its own output folder)."""
    runs = tmp_path_factory.mktemp("runs")
    try:
        medlab = cli(["run", "--config", CPU, "--config", str(EXPERIMENTS / "quickstart.yaml"), *QUICK, *SMALL,
                      f"--experiment.runs_dir={runs}", "--trainer.callbacks=[]"])  # fmt: skip
    finally:
        finish_wandb()
    return medlab.run_dir


def test_a_folder_of_mixed_formats_is_predicted_as_medlab_test_predicts_those_images(quickstart, tmp_path) -> None:
    run_dir = quickstart
    data = SyntheticLesions(num_train=200, num_val=50, num_test=60)
    data.setup("test")
    images = data.arrays["test"][0][..., 0]  # uint8 (N, 32, 32)
    folder = tmp_path / "new"
    folder.mkdir()
    Image.fromarray(images[0]).save(folder / "0.png")
    dicom_slice(folder / "1.dcm", images[1], generate_uid())
    # A NIfTI slice as ITK and DICOM index it (first axis: the column), as a converter from DICOM writes it.
    nib.save(nib.Nifti1Image(images[2].T[..., None], np.eye(4)), folder / "2.nii.gz")
    np.save(folder / "3.npy", images[3])
    Image.fromarray(images[4]).resize((64, 64), Image.Resampling.NEAREST).convert("RGB").save(folder / "4.png")
    (folder / "5.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")

    with pytest.raises(SystemExit) as failed:
        rows = predict(run_dir, [folder], tmp_path / "out")
    assert failed.value.code == 1  # one input could not be read: the command fails, after writing the rest
    with (tmp_path / "out" / "predictions.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [Path(r["input"]).name for r in rows] == ["0.png", "1.dcm", "2.nii.gz", "3.npy", "4.png", "5.png"]
    assert rows[5]["error"].startswith("cannot be read as an image") and rows[5]["predicted"] == ""
    assert rows[4]["conversions"] == "RGB to grey (ITU-R 601 luma); resized from 64x64 to 32x32 (area interpolation)"
    assert rows[1]["conversions"].endswith("values within 0-255 kept") and rows[0]["conversions"] == ""
    tested = read_item_results(run_dir)
    for row, expected in zip(rows[:4], tested[:4], strict=True):
        assert abs(float(row["p_lesion"]) - float(expected["p_lesion"])) <= 1e-6
        assert row["predicted"] == expected["predicted"]


def test_an_empty_folder_or_a_missing_file_stops_predict_before_anything_is_written(quickstart, tmp_path, capsys):
    run_dir = quickstart
    (tmp_path / "empty").mkdir()
    for inputs, said in ((tmp_path / "empty", "holds no input files"), (tmp_path / "gone.png", "does not exist")):
        with pytest.raises(SystemExit):
            predict(run_dir, [inputs], tmp_path / "out")
        assert said in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_breastmnist_test_images_as_png_files_give_medlab_tests_auc(run_medlab, shared_data, tmp_path) -> None:
    run_dir = run_medlab("medmnist/resnet18", "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
                         "--model.net.init_args.width=16")  # fmt: skip
    data = MedMNIST(flag="breastmnist", root=str(shared_data))
    data.setup("test")
    images, labels = data.arrays["test"]
    folder = tmp_path / "png"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image[..., 0]).save(folder / f"{i:03d}.png")
    rows = predict(run_dir, [folder], tmp_path / "out")
    assert len(rows) == 156
    p = torch.tensor([float(r["p_normal, benign"]) for r in rows])
    auc = BinaryAUROC()(p, torch.from_numpy(labels))
    assert abs(float(auc) - read_summary(run_dir)["test"]["test/auc"]) < 1e-6


def test_an_mitbih_record_gives_a_row_per_annotated_beat_as_medlab_test_scores_it(
    run_medlab, shared_data, tmp_path
) -> None:
    run_dir = run_medlab("ecg/mitbih_lstm", "--trainer.max_epochs=1", '--data.train_records=["100"]',
                         '--data.val_records=["119"]', '--data.test_records=["232"]')  # fmt: skip
    record = tmp_path / "232"
    for suffix in (".hea", ".dat", ".atr"):
        shutil.copy(shared_data / "ecg" / "mitdb" / f"232{suffix}", record.with_suffix(suffix))
    rows = predict(run_dir, [record], tmp_path / "out")
    tested = read_item_results(run_dir)
    assert len(rows) == len(tested) > 1000  # every annotated beat whose window fits in the record
    for row, expected in zip(rows, tested, strict=True):
        assert f"232:{row['sample']}" == expected["item"] and row["annotated"] == expected["true"]
        assert all(abs(float(row[f"p_{c}"]) - float(expected[f"p_{c}"])) <= 1e-6 for c in "NSVFQ")


def test_volumes_as_nifti_dicom_series_and_npy_are_predicted_as_medlab_test_predicts_them(run_medlab, tmp_path):
    run_dir = run_medlab("medmnist3d/synthetic_cnn_gru", "--trainer.max_epochs=1", "--data.num_train=32",
                         "--data.num_val=8", "--data.num_test=8", "--data.size=16")  # fmt: skip
    data = SyntheticVolumes(size=16, num_train=32, num_val=8, num_test=8)
    data.setup("test")
    volumes = data.load_split("test")[0]  # uint8 (N, D, H, W)
    folder = tmp_path / "new"
    folder.mkdir()
    # NIfTI as ITK and DICOM index a volume: (x, y, z), i.e. (W, H, D).
    nib.save(nib.Nifti1Image(volumes[0].transpose(2, 1, 0), np.eye(4)), folder / "0.nii.gz")
    (folder / "1").mkdir()
    series = generate_uid()
    for z, plane in enumerate(volumes[1]):
        dicom_slice(folder / "1" / f"{z:02d}.dcm", plane, series, position=2.0 * z)
    np.save(folder / "2.npy", volumes[2])
    rows = predict(run_dir, [folder], tmp_path / "out")
    assert [Path(r["input"]).name for r in rows] == ["0.nii.gz", "1", "2.npy"]
    for row, expected in zip(rows, read_item_results(run_dir)[:3], strict=True):
        assert abs(float(row["p_lesion"]) - float(expected["p_lesion"])) <= 1e-6


def test_a_cinc2017_record_gives_one_row_as_medlab_test_scores_it(run_medlab, shared_data, tmp_path) -> None:
    run_dir = run_medlab("ecg/cinc2017_gru", "--trainer.max_epochs=1", "--trainer.limit_train_batches=2")
    tested = read_item_results(run_dir)[0]
    for suffix in (".hea", ".mat"):
        shutil.copy(shared_data / "ecg" / "cinc2017_af_400" / f"{tested['item']}{suffix}", tmp_path)
    (row,) = predict(run_dir, [tmp_path / f"{tested['item']}.hea"], tmp_path / "out")
    assert row["input"] == str(tmp_path / tested["item"])
    assert all(abs(float(row[f"p_{c}"]) - float(tested[f"p_{c}"])) <= 1e-6 for c in ("Normal", "AF", "Other", "Noisy"))
