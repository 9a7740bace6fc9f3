from pathlib import Path

import pytest

from datamodules.cifar import CIFAR10, write_cifar10
from datamodules.validation import DatasetError
from tests.conftest import read_summary


def test_cifar10_reads_the_official_format_with_a_seeded_validation_holdout(tmp_path: Path) -> None:
    root = write_cifar10(tmp_path)
    data = CIFAR10(root=str(root), val_size=10, verify_checksums=False)
    data.setup()
    assert [len(data.datasets[s]) for s in ("train", "val", "test")] == [90, 10, 20]
    assert data.class_names[:3] == ["airplane", "automobile", "bird"]
    image, label = data.datasets["train"][0]
    assert image.shape == (3, 32, 32) and 0 <= label < 10
    again = CIFAR10(root=str(root), val_size=10, verify_checksums=False)
    again.setup("fit")
    assert (data.datasets["val"].images == again.datasets["val"].images).all()


def test_cifar10_checks_torchvision_checksums_by_default(tmp_path: Path) -> None:
    root = write_cifar10(tmp_path)
    with pytest.raises(DatasetError, match=r"data_batch_1: md5 differs.*verify_checksums=false"):
        CIFAR10(root=str(root)).setup("fit")


def test_cifar10_missing_folder_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"cifar-10-batches-py/test_batch: missing.*download=true"):
        CIFAR10(root=str(tmp_path)).setup("test")


def test_cifar10_lenet_experiment_runs_on_the_official_format(tmp_path: Path, run_medlab) -> None:
    root = write_cifar10(tmp_path)
    run_dir = run_medlab(
        "cifar10_lenet",
        f"--data.root={root}",
        "--data.verify_checksums=false",
        "--data.val_size=20",
        "--trainer.max_epochs=1",
    )
    summary = read_summary(run_dir)
    assert summary["experiment"] == "cifar10_lenet"
    assert set(summary["test"]) >= {"test/acc", "test/auc", "test/f1", "test/sensitivity", "test/specificity"}
