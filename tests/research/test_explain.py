"""``medlab explain``: Grad-CAM, Grad-CAM++ and occlusion maps that point at the lesion a trained model detects, and
stop doing so when its weights are random (the pointing game and Adebayo et al.'s randomisation test)."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.explanation_sanity import detected_lesions, sanity
from datamodules import SyntheticLesions
from research.cli import cli, main
from research.explain import Explainer, receptive_field
from research.models import LeNet, ResNet18, SliceRecurrentNet
from research.runs import RunError
from research.tracking import finish_wandb
from tests.wandb_records import logged

SMALL = ["--data.num_train=1000", "--data.num_val=100", "--data.num_test=200", "--trainer.max_epochs=6"]


def explain(run_dir: Path, *args: str) -> None:
    try:
        main(["explain", "--config", str(run_dir / "config.yaml"), f"--ckpt_path={best(run_dir)}", *args])
    finally:
        finish_wandb()


def best(run_dir: Path) -> Path:
    return next((run_dir / "checkpoints").glob("best-*.ckpt"))


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    try:
        medlab = cli(["run", "--config", "experiments/trainer/cpu.yaml", "--config", "experiments/quickstart.yaml",
                      f"--experiment.runs_dir={runs}", "--trainer.enable_progress_bar=false", *SMALL])  # fmt: skip
    finally:
        finish_wandb()
    return medlab.run_dir


def test_maps_point_at_the_lesion_and_not_when_the_weights_are_random(quickstart: Path) -> None:
    medlab = cli(["explain", "--config", str(quickstart / "config.yaml"), f"--ckpt_path={best(quickstart)}"])
    net, images, masks = detected_lesions(medlab, "test")
    assert len(images) >= 60  # of the 100 test lesions
    for method, count in (("gradcam", len(images)), ("occlusion", 40)):  # occlusion: 196 windows an image
        found = sanity(net, images[:count], masks[:count], 1, method=method)
        assert found["pointing"] >= 0.9, (method, found)
        assert found["pointing_randomised"] <= 0.3 and found["spearman"] < 0.3, (method, found)


def test_explain_writes_maps_overlays_and_a_panel_and_logs_it_to_the_run(quickstart: Path) -> None:
    explain(quickstart, "--limit=40")
    folder = quickstart / "explanations" / "gradcam"
    with (folder / "explanations.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 40 and set(rows[0]) == {"item", "true", "predicted", "p_no lesion", "p_lesion", "peak"}
    with np.load(folder / "maps.npz", allow_pickle=False) as maps:
        assert len(maps.files) == 40 and maps["00000"].shape == (32, 32)
        assert all(maps[k].min() >= 0 and maps[k].max() <= 1 for k in maps.files)
        # The peak written is the map's maximum; for a detected lesion it is on the lesion.
        first = int(np.argmax([r["predicted"] == "lesion" == r["true"] for r in rows]))
        peak = tuple(int(v) for v in rows[first]["peak"].split())
        assert np.unravel_index(maps[f"{first:05d}"].argmax(), (32, 32)) == peak
    masks = SyntheticLesions(num_train=1000, num_val=100, num_test=200).lesion_masks("test")
    hits = [
        masks[i][tuple(int(v) for v in r["peak"].split())]
        for i, r in enumerate(rows)
        if r["predicted"] == r["true"] == "lesion"
    ]
    assert np.mean(hits) >= 0.8
    assert len(list((folder / "overlays").glob("*.png"))) == 40
    assert Image.open(folder / "panel.png").size[0] > 400
    runs = [logged(path) for path in (quickstart / "wandb").glob("offline-run-*/run-*.wandb")]
    assert len({path.name for path in (quickstart / "wandb").glob("offline-run-*/run-*.wandb")}) == 1  # one run id
    panels = [step for run in runs for step in run["history"] if "explain/gradcam/_type" in step]
    assert len(panels) == 1 and panels[0]["explain/gradcam/_type"] == "image-file"


def test_occlusion_explains_volumes_and_grad_cam_refuses_a_layer_that_sees_slices() -> None:
    net = SliceRecurrentNet(1, 2, features=8, hidden_size=8)
    volumes = torch.randn(2, 1, 12, 12, 12)
    probabilities, classes, maps = Explainer(net, "occlusion", mask_size=4)(volumes)
    assert maps.shape == (2, 12, 12, 12) and probabilities.shape == (2, 2) and 0 <= maps.min() <= maps.max() <= 1
    with pytest.raises(RunError, match="reads inputs in parts"):
        Explainer(net, "gradcam")(volumes)


def test_a_layer_is_placed_by_its_receptive_field_where_the_network_starts_with_one_chain() -> None:
    lenet = LeNet(1, 2, 32)
    assert receptive_field(lenet, "features.2") == (2.5, 2.0)  # 5x5 valid conv, then 2x2 pool
    assert receptive_field(lenet, "features.5") == (7.5, 4.0)
    assert receptive_field(ResNet18(1, 2), "layer4") is None  # "same" padding: MONAI's upsampler is right
    with pytest.raises(RunError, match="no such layer in LeNet; its convolution"):
        Explainer(lenet, "gradcam", layer="features.9")


def test_a_regression_model_is_not_explained(run_medlab, capsys) -> None:
    run_dir = run_medlab("sequence/synthetic_forecast_lstm", "--trainer.max_epochs=1")
    with pytest.raises(SystemExit):
        main(["explain", "--config", str(run_dir / "config.yaml"), f"--ckpt_path={run_dir / 'checkpoints/last.ckpt'}"])
    assert "medlab explain explains one-input classifiers" in capsys.readouterr().err
    assert not (run_dir / "explanations").exists()


def test_explain_reads_new_files_as_predict_does(quickstart: Path, tmp_path: Path) -> None:
    images = SyntheticLesions(num_train=1000, num_val=100, num_test=200)
    images.setup("test")
    Image.fromarray(images.arrays["test"][0][0, ..., 0]).save(tmp_path / "scan.png")
    explain(quickstart, f"--data.prediction.paths=[{tmp_path / 'scan.png'}]", f"--output={tmp_path / 'out'}")
    with (tmp_path / "out" / "gradcam" / "explanations.csv").open(newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["item"] == str(tmp_path / "scan.png") and row["true"] == ""
