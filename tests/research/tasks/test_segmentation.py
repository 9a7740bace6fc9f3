import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from torch import nn

from datamodules import SyntheticSegmentation
from datamodules.segmentation import Labels, Patches
from datamodules.spec import DataSpec
from research.cli import cli
from research.models import UNet
from research.tasks import Segmenter
from research.tracking import finish_wandb
from tests.conftest import CPU, EXPERIMENTS, QUICK, REPO, read_item_results, read_summary

SYNTHETIC_3D = str(EXPERIMENTS / "segmentation" / "synthetic3d_unet.yaml")
# 2D synthetic segmentation through the 3D experiment file: small and quick for end-to-end tests.
SMALL_2D = [
    "--model.net.init_args.spatial_dims=2", "--data.spatial_dims=2", "--data.image_size=64",
    "--data.num_images=15", "--data.patches.size=[32, 32]", "--trainer.max_epochs=2",
]  # fmt: skip


class Pointwise(nn.Module):
    """A 1x1 convolution: its output at a pixel depends on that pixel only, so any tiling must give the same."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _spec(num_classes: int) -> dict:
    return DataSpec("segmentation", num_classes, 1, 2, [str(c) for c in range(num_classes)]).as_dict()


def test_sliding_window_on_a_larger_image_equals_whole_image_inference() -> None:
    torch.manual_seed(0)
    model = Segmenter(Pointwise, data=_spec(3), roi_size=[32, 32], overlap=0.5).eval()
    image = torch.randn(1, 1, 100, 90)
    with torch.no_grad():
        assert torch.allclose(model.infer(image), model(image), atol=1e-5)


def test_sliding_window_with_one_window_is_exactly_the_network() -> None:
    torch.manual_seed(0)
    model = Segmenter(UNet, data=_spec(2), roi_size=[64, 64]).eval()
    image = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.infer(image).argmax(1), model(image).argmax(1))
        assert torch.allclose(model.infer(image), model(image), atol=1e-5)


def test_flip_tta_averages_flipped_predictions() -> None:
    torch.manual_seed(0)
    model = Segmenter(UNet, data=_spec(2), roi_size=[32, 32], tta_flip=True).eval()
    image = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        expected = (model(image) + model(image.flip(2)).flip(2) + model(image.flip(3)).flip(3)) / 3
        assert torch.allclose(model.infer(image), expected, atol=1e-5)


def test_segmenter_refuses_a_classification_datamodule() -> None:
    with pytest.raises(ValueError, match="Segmenter learns segmentation tasks; the DataModule's task is 'binary'"):
        Segmenter(UNet, data=DataSpec("binary", 2, 1, 2, ["a", "b"]).as_dict())


def test_synthetic_3d_experiment_runs_end_to_end(run_medlab) -> None:
    run_dir = run_medlab(
        "segmentation/synthetic3d_unet", "--data.num_images=10", "--data.image_size=32",
        "--data.patches.size=[32, 32, 32]", "--trainer.max_epochs=1",
    )  # fmt: skip
    summary = read_summary(run_dir)
    assert {"test/dice", "test/dice_sphere", "test/dice_background", "test/hd95_sphere"} <= set(summary["test"])
    assert (run_dir / "figures" / "segmentation_overlay.png").is_file()
    rows = read_item_results(run_dir)  # one row per test case, named by its case id
    assert [row["item"] for row in rows] == json.loads((run_dir / "splits.json").read_text())["test"]
    assert set(rows[0]) == {"item", *(f"{m}_{c}" for m in ("dice", "hd95") for c in ("background", "sphere"))}
    mean_dice = sum(float(row["dice_sphere"]) for row in rows) / len(rows)
    assert mean_dice == pytest.approx(summary["test"]["test/dice"], abs=1e-6)
    assert (run_dir / "splits.json").is_file()


def test_predict_writes_a_nifti_mask_with_the_input_affine_and_shape(tmp_path: Path) -> None:
    try:
        fit = cli(["fit", "--config", CPU, "--config", SYNTHETIC_3D, f"--experiment.runs_dir={tmp_path / 'runs'}",
                   "--data.num_images=5", "--data.image_size=32", "--data.patches.size=[32, 32, 32]",
                   "--trainer.max_epochs=1", *QUICK])  # fmt: skip
    finally:
        finish_wandb()
    checkpoint = fit.run_dir / "checkpoints" / "last.ckpt"
    # An oblique, LPS-oriented volume with anisotropic voxels: the writer must undo the RAS reorientation.
    affine = np.array([[-0.8, 0.1, 0.0, 90.0], [0.0, -0.9, 0.0, 120.0], [0.0, 0.0, 2.5, -40.0], [0, 0, 0, 1]])
    source = tmp_path / "volume.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((40, 36, 12)).astype(np.float32), affine), source)
    out = tmp_path / "predictions"
    cli(["predict", "--config", CPU, "--config", SYNTHETIC_3D, f"--ckpt_path={checkpoint}",
         f"--data.prediction.paths=[{source}]", f"--data.prediction.output_dir={out}",
         "--data.patches.size=[32, 32, 32]", *QUICK])  # fmt: skip
    (written,) = out.glob("*.nii.gz")
    mask = nib.load(written)
    assert written.name == "volume_seg.nii.gz"
    assert mask.shape == (40, 36, 12) and np.allclose(mask.affine, affine, atol=1e-4)
    assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}


def test_ddp_on_two_cpu_processes_reports_the_same_dice_as_one_process(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "research.cli", "run", "--config", CPU, "--config", SYNTHETIC_3D,
               "--config", str(EXPERIMENTS / "trainer" / "ddp.yaml"), "--trainer.accelerator=cpu",
               "--trainer.devices=2", f"--experiment.runs_dir={tmp_path}", *SMALL_2D, *QUICK]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.pop("MEDLAB_RUN_DIR", None)
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "segmentation" / "synthetic3d_unet").iterdir()
    summary = read_summary(run_dir)

    model = Segmenter.load_from_checkpoint(run_dir / summary["best_checkpoint"])
    data = SyntheticSegmentation(spatial_dims=2, image_size=64, num_images=15, patches=Patches(size=[32, 32]),
                                 labels=Labels(names=["background", "sphere"]))  # fmt: skip
    trainer = Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, deterministic=True,
        default_root_dir=tmp_path / "single",
    )  # fmt: skip
    single = trainer.test(model, datamodule=data, verbose=False)[0]
    assert set(single) == set(summary["test"])
    for name, value in single.items():
        assert summary["test"][name] == pytest.approx(value, abs=1e-5), name


def test_hd95_is_skipped_for_absent_classes_and_worst_for_missed_ones() -> None:
    class Constant(nn.Module):
        """Predicts class 1 everywhere: class 2 is missed, class 0 absent from the prediction too."""

        def __init__(self, in_channels: int, num_classes: int) -> None:
            super().__init__()
            self.num_classes = num_classes
            self.bias = nn.Parameter(torch.zeros(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits = torch.zeros(x.shape[0], self.num_classes, *x.shape[2:]) + self.bias
            logits[:, 1] = 1
            return logits

    model = Segmenter(Constant, data=_spec(4), roi_size=[30, 40]).eval()
    label = torch.zeros(1, 1, 30, 40, dtype=torch.long)
    label[..., 5:10, 5:10], label[..., 20:25, 20:25] = 1, 2  # class 3 absent from the ground truth
    with torch.no_grad():
        model._evaluate({"image": torch.zeros(1, 1, 30, 40), "label": label}, "test")
    hd95 = model.scores["test_hd95"].compute().reshape(-1)
    assert hd95[2] == pytest.approx(50.0)  # missed: the 30 x 40 image's diagonal
    assert torch.isnan(hd95[3]) and torch.isfinite(hd95[1])
