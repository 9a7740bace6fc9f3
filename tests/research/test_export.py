"""``medlab export``: ONNX and torch.export files of real runs, checked against PyTorch, usable without medlab."""

import csv
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from benchmarks.export_parity import onnx_sliding_window_dice
from datamodules import SyntheticLesions
from research.cli import main
from research.runs import RunError
from research.tracking import finish_wandb
from tests.conftest import read_summary

SMALL = ["--data.num_train=200", "--data.num_val=50", "--data.num_test=60", "--trainer.max_epochs=1"]


def export(run_dir: Path, *args: str, checkpoint: str = "last.ckpt") -> None:
    try:
        main(["export", "--config", str(run_dir / "config.yaml"), f"--ckpt_path={run_dir / 'checkpoints' / checkpoint}",
              *args])  # fmt: skip
    finally:
        finish_wandb()


def test_onnx_export_runs_with_onnxruntime_and_numpy_alone_as_medlab_test_does(run_medlab, tmp_path: Path) -> None:
    run_dir = run_medlab("quickstart", *SMALL)
    best = Path(read_summary(run_dir)["best_checkpoint"]).name
    export(run_dir, checkpoint=best)
    path = run_dir / "export" / "model.onnx"
    metadata = json.loads((run_dir / "export" / "model.onnx.json").read_text())
    assert metadata["class_names"] == ["no lesion", "lesion"] and metadata["input"]["dynamic_axes"] == {"0": "batch"}
    assert metadata["parity"]["max_abs_difference"] <= 1e-4 and metadata["preprocessing"]["normalize"]
    assert json.loads({p.key: p.value for p in onnx.load(path).metadata_props}["medlab"])["task"] == "binary"

    # What docs/export.md does: the test images as uint8 arrays, the written preprocessing, onnxruntime, softmax.
    data = SyntheticLesions(num_train=200, num_val=50, num_test=60)
    data.setup("test")
    images, _ = data.arrays["test"]
    x = ((images.astype(np.float32) / 255 - 0.5) / 0.5).transpose(0, 3, 1, 2)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"input": x})[0]
    p_lesion = np.exp(logits[:, 1]) / np.exp(logits).sum(axis=1)
    with (run_dir / "test_predictions.csv").open(newline="") as handle:
        expected = [float(row["p_lesion"]) for row in csv.DictReader(handle)]
    assert np.abs(p_lesion - np.array(expected)).max() < 1e-5


def test_exported_program_round_trips_with_torch_export(run_medlab) -> None:
    run_dir = run_medlab("quickstart", *SMALL)
    export(run_dir, "--format=pt2", f"--output={run_dir / 'lenet.pt2'}")
    program = torch.export.load(run_dir / "lenet.pt2")
    x = torch.randn(5, 1, 32, 32)  # another batch size than the examples'
    model = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert program.module()(x).shape == (5, 2) and any(k.startswith("net.") for k in model)
    assert json.loads((run_dir / "lenet.pt2.json").read_text())["parity"]["max_abs_difference"] <= 1e-4


def test_a_segmentation_network_exports_with_dynamic_batch_and_size(run_medlab) -> None:
    run_dir = run_medlab(
        "segmentation/synthetic3d_unet", "--data.spatial_dims=2", "--data.num_images=10", "--data.image_size=64",
        "--data.patches.size=[32, 32]", "--model.net.init_args.spatial_dims=2", "--trainer.max_epochs=1",
    )  # fmt: skip
    export(run_dir)
    metadata = json.loads((run_dir / "export" / "model.onnx.json").read_text())
    assert metadata["parity"]["inputs"] == [[2, 1, 32, 32], [1, 1, 64, 64]]
    assert metadata["preprocessing"]["label_values"] == [0, 1] and metadata["input"]["dynamic_axes"]["3"] == "w"
    session = onnxruntime.InferenceSession(str(run_dir / "export" / "model.onnx"))
    assert session.run(None, {"input": np.zeros((3, 1, 48, 80), np.float32)})[0].shape == (3, 2, 48, 80)
    # The ONNX model in MONAI's sliding windows over whole test images scores what medlab measured with PyTorch.
    for name, dice in onnx_sliding_window_dice(run_dir).items():
        assert dice["onnx"] == pytest.approx(dice["pytorch"], abs=1e-3), name
        assert dice["numpy"] == pytest.approx(dice["pytorch"], abs=1e-3), name


def test_a_sequence_network_exports_for_full_length_batches(run_medlab) -> None:
    run_dir = run_medlab("sequence/synthetic_lstm", "--data.num_train=60", "--data.num_val=20", "--data.num_test=20",
                         "--data.min_length=100", "--data.max_length=100", "--trainer.max_epochs=1")  # fmt: skip
    export(run_dir)
    metadata = json.loads((run_dir / "export" / "model.onnx.json").read_text())
    assert metadata["parity"]["max_abs_difference"] <= 1e-4 and metadata["input"]["shape"][2] == 100


def test_a_checkpoint_of_another_task_or_outside_a_run_is_refused(run_medlab, tmp_path: Path, capsys) -> None:
    classifier = run_medlab("quickstart", *SMALL)
    segmenter = run_medlab(
        "segmentation/synthetic3d_unet", "--data.num_images=6", "--data.image_size=32",
        "--data.patches.size=[32, 32, 32]", "--trainer.max_epochs=1",
    )  # fmt: skip
    with pytest.raises(SystemExit):
        main(["export", "--config", str(classifier / "config.yaml"),
              f"--ckpt_path={segmenter / 'checkpoints' / 'last.ckpt'}"])  # fmt: skip
    assert "does not fit" in capsys.readouterr().err
    loose = tmp_path / "loose.ckpt"
    loose.write_bytes((classifier / "checkpoints" / "last.ckpt").read_bytes())
    with pytest.raises(SystemExit):
        main(["export", "--config", str(classifier / "config.yaml"), f"--ckpt_path={loose}"])
    assert "outside a run folder: say where to write with --output" in capsys.readouterr().err
    assert not (classifier / "export").exists()


def test_an_unexportable_network_names_what_failed() -> None:
    from research.export import export_onnx

    class DataDependent(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[x > 0].sum().reshape(1) if int(x.sum()) > 0 else x.sum().reshape(1)

    with pytest.raises(RunError, match="DataDependent cannot be exported to ONNX: .+"):
        export_onnx(DataDependent(), [torch.ones(2, 3)], {0: "batch"}, Path("/nonexistent/x.onnx"), {})
