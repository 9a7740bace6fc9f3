"""Registration: warps, geometry (affines, LPS landmarks, millimetres), the learned and the classical task run by
``medlab run``, ``medlab predict`` writing in the fixed image's geometry, and bad pairs refused by name."""

import csv
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from datamodules.registration import (
    PairFiles,
    lps_to_ras,
    ras_to_lps,
    read_pair,
    refine_field,
    relative_displacement,
    to_mm,
)
from datamodules.validation import DatasetError
from research.cli import main
from research.registration import (
    folding_percent,
    jacobian_determinant,
    label_dice,
    target_registration_error,
    warp_image,
    warp_label,
)
from tests.conftest import CPU, QUICK, read_item_results, read_summary

TRANSLATION_MM = np.array([3.0, -4.0, 0.0])  # 5 mm in world (RAS)


def blobs(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A smooth volume of Gaussian blobs on a dark background, something to align."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij"))
    volume = np.zeros(shape)
    for _ in range(6):
        centre = rng.uniform(0.25, 0.75, len(shape)) * np.array(shape)
        width = rng.uniform(2.0, 4.0)
        volume += np.exp(-(((grid - centre.reshape(-1, *[1] * len(shape))) ** 2).sum(0)) / (2 * width**2))
    return (volume / volume.max()).astype(np.float32)


def oblique_affine(spacing: tuple[float, float, float], degrees: float = 20.0) -> np.ndarray:
    angle = math.radians(degrees)
    rotation = np.array([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = [-20.0, 10.0, 5.0]
    return affine


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(array, affine), path)
    return path


@pytest.fixture
def translated_pair(tmp_path: Path) -> dict[str, Path]:
    """One oblique, anisotropic volume; the moving image is the same voxels placed 5 mm further in world."""
    volume = blobs((28, 24, 16))
    affine = oblique_affine((1.0, 1.5, 2.5))
    moved = affine.copy()
    moved[:3, 3] += TRANSLATION_MM
    label = (volume > 0.3).astype(np.uint8)
    voxels = np.array([[8, 8, 6, 1], [18, 10, 8, 1], [12, 16, 10, 1], [20, 18, 5, 1]], dtype=np.float64)
    points = (voxels @ affine.T)[:, :3]  # RAS mm; the files hold LPS, as ITK and 3D Slicer write them
    return {
        "fixed": write_nifti(tmp_path / "fixed.nii.gz", volume, affine),
        "moving": write_nifti(tmp_path / "moving.nii.gz", volume, moved),
        "fixed_label": write_nifti(tmp_path / "fixed_label.nii.gz", label, affine),
        "moving_label": write_nifti(tmp_path / "moving_label.nii.gz", label, moved),
        "fixed_landmarks": write_landmarks(tmp_path / "fixed_points.csv", ras_to_lps(points)),
        "moving_landmarks": write_landmarks(tmp_path / "moving_points.csv", ras_to_lps(points + TRANSLATION_MM)),
    }


def test_zero_displacement_warps_to_the_identity() -> None:
    image = torch.rand(2, 1, 9, 8, 7)
    label = torch.randint(0, 5, (2, 1, 9, 8, 7))
    zero = torch.zeros(2, 3, 9, 8, 7)
    assert (warp_image(image, zero) - image).abs().max() < 1e-6
    assert torch.equal(warp_label(label, zero), label)
    assert torch.allclose(jacobian_determinant(zero), torch.ones(2, 9, 8, 7))
    assert folding_percent(zero).tolist() == [0.0, 0.0]


def test_a_folding_field_is_counted() -> None:
    ddf = torch.zeros(1, 2, 10, 10)
    ddf[0, 0] = -2.0 * torch.arange(10.0).view(10, 1)  # x -> -x: every voxel folds
    assert folding_percent(ddf).item() == 100.0


def test_lps_landmarks_round_trip_exactly() -> None:
    points = np.random.default_rng(0).normal(0, 80, (50, 3))
    ras = lps_to_ras(points)
    assert np.array_equal(ras[:, :2], -points[:, :2]) and np.array_equal(ras[:, 2], points[:, 2])
    assert np.array_equal(ras_to_lps(ras), points)


def test_label_dice_counts_each_class() -> None:
    fixed = torch.tensor([[0, 1, 1, 2, 2, 2]]).view(1, 1, 6)
    warped = torch.tensor([[0, 1, 2, 2, 2, 0]]).view(1, 1, 6)
    dice = label_dice(warped, fixed, 4)
    assert dice[0, 1].item() == pytest.approx(2 * 1 / 3)
    assert dice[0, 2].item() == pytest.approx(2 * 2 / 6)
    assert math.isnan(dice[0, 3].item())  # in neither map


def test_synthetic_displacement_is_the_one_that_registers_the_pair() -> None:
    """``relative_displacement`` solves moving(x + u) = fixed(x) for two deformations of one image."""
    image = torch.as_tensor(blobs((32, 32)))[None, None]
    shape = torch.Size([32, 32])
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    fixed_field = torch.stack([torch.sin(x / 6) * 1.5, torch.cos(y / 7) * 1.5])
    moving_field = torch.stack([torch.cos(x / 5) * 1.2, torch.sin(y / 6) * 1.2])
    fixed, moving = warp_image(image, fixed_field[None]), warp_image(image, moving_field[None])
    u = relative_displacement(fixed_field, moving_field)
    assert u.shape[1:] == shape
    inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))  # away from the border's clamping
    error, before = (warp_image(moving, u[None]) - fixed)[inner].abs(), (moving - fixed)[inner].abs()
    assert error.max() < 0.05 and error.mean() < 0.05 * before.mean()  # what is left is bilinear resampling


def test_refined_field_keeps_millimetres() -> None:
    """A uniform displacement of 1 coarse voxel is 2 fine voxels after refining by 2."""
    ddf = torch.ones(1, 3, 4, 5, 6)
    fine = refine_field(ddf, 2, (8, 10, 12))
    assert fine.shape == (1, 3, 8, 10, 12) and torch.allclose(fine, torch.full_like(fine, 2.0))


def test_target_registration_error_in_millimetres() -> None:
    affine = torch.tensor(oblique_affine((1.0, 2.0, 3.0)))
    fixed_points = torch.tensor([[-10.0, 20.0, 15.0], [-5.0, 25.0, 20.0]])
    moving_points = fixed_points + torch.tensor(TRANSLATION_MM)
    zero = torch.zeros(3, 16, 16, 16)
    assert target_registration_error(zero, fixed_points, moving_points, affine).item() == pytest.approx(5.0)
    # the translation as voxels of this oblique grid: the inverse of the affine's linear part
    voxels = torch.linalg.solve(affine[:3, :3], torch.tensor(TRANSLATION_MM)).float()
    ddf = voxels.view(3, 1, 1, 1).expand(3, 16, 16, 16)
    assert target_registration_error(ddf, fixed_points, moving_points, affine).item() == pytest.approx(0, abs=1e-4)
    assert to_mm(ddf[None], affine[None])[0, :, 0, 0, 0].tolist() == pytest.approx(TRANSLATION_MM.tolist(), abs=1e-5)


def test_moving_on_another_grid_is_resampled_through_world_coordinates(translated_pair: dict[str, Path]) -> None:
    pair = read_pair(PairFiles(**{k: str(v) for k, v in translated_pair.items()}), Path("/"), [1], "LPS")
    assert pair["moving"].shape == pair["fixed"].shape
    assert torch.allclose(pair["affine"], torch.tensor(oblique_affine((1.0, 1.5, 2.5))), atol=1e-5)
    assert float(pair["moving"].sub(pair["fixed"]).abs().max()) > 0.1  # 5 mm apart in the fixed grid


def write_landmarks(path: Path, points: np.ndarray) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["x", "y", "z"])
        writer.writerows(points.tolist())
    return path


@pytest.mark.parametrize("problem", ["dimensionality", "landmark_count", "label_grid", "empty"])
def test_bad_pairs_are_refused_naming_the_file(tmp_path: Path, translated_pair: dict[str, Path], problem: str) -> None:
    files = {k: str(v) for k, v in translated_pair.items()}
    if problem == "dimensionality":
        files["moving"] = str(write_nifti(tmp_path / "flat.nii.gz", blobs((28, 24)), np.eye(4)))
        culprit, said = files["moving"], "2D moving image for the 3D fixed image"
    elif problem == "landmark_count":
        files["fixed_landmarks"] = str(write_landmarks(tmp_path / "f.csv", np.zeros((4, 3))))
        files["moving_landmarks"] = str(write_landmarks(tmp_path / "m.csv", np.zeros((3, 3))))
        culprit, said = files["moving_landmarks"], "3 points, but"
    elif problem == "label_grid":
        files["fixed_label"] = str(write_nifti(tmp_path / "l.nii.gz", np.ones((28, 24, 15), np.uint8), np.eye(4)))
        culprit, said = files["fixed_label"], "differs from its image"
    else:
        files["moving"] = str(write_nifti(tmp_path / "zeros.nii.gz", np.zeros((28, 24, 16), np.float32), np.eye(4)))
        culprit, said = files["moving"], "empty image"
    with pytest.raises(DatasetError) as error:
        read_pair(PairFiles(**files), Path("/"), [1], "LPS")
    assert culprit in str(error.value) and said in str(error.value)


def pair_list(files: dict[str, Path]) -> str:
    return "[{" + ", ".join(f"{k}: {v}" for k, v in files.items()) + ", name: shifted}]"


@pytest.mark.slow
def test_classical_run_recovers_a_5_mm_translation_and_predict_writes_the_fixed_geometry(
    tmp_path: Path, translated_pair: dict[str, Path]
) -> None:
    """The geometry test: an oblique, anisotropic pair 5 mm apart in world; elastix (translation) through ``medlab
    run``; then ``medlab predict`` writes the displacement (mm, RAS) and the warped images with the fixed affine."""
    pairs = pair_list(translated_pair)
    args = ["run", "--config", CPU, "--config", "experiments/registration/head_ct_elastix.yaml", *QUICK,
            f"--experiment.runs_dir={tmp_path / 'runs'}", "--data.spatial_dims=3", f"--data.pairs={pairs}",
            "--data.train_pairs=[shifted]", "--data.val_pairs=[shifted]", "--data.test_pairs=[shifted]",
            "--model.transforms=[translation]", "--model.resolutions=2"]  # fmt: skip
    main(args)
    run_dir = next((tmp_path / "runs" / "registration" / "head_ct_elastix").iterdir())
    summary = read_summary(run_dir)["test"]
    assert summary["test/dice"] > 0.95 > summary["test/dice_before"]
    assert summary["test/tre_before_mm"] == pytest.approx(5.0, abs=1e-3) and summary["test/tre_mm"] < 0.5
    assert summary["test/folding_pct"] == 0.0
    rows = read_item_results(run_dir)
    assert [row["item"] for row in rows] == ["shifted"] and float(rows[0]["seconds_per_pair"]) > 0
    assert (run_dir / "figures" / "registration.png").is_file()

    output = tmp_path / "predicted"
    # nothing learned, so no checkpoint: the run's config is the whole method
    assert read_summary(run_dir)["best_checkpoint"] is None
    main(["predict", "--config", str(run_dir / "config.yaml"), f"--data.predict_pairs={pairs}",
          f"--data.output_dir={output}", "--trainer.enable_progress_bar=false"])  # fmt: skip
    fixed_affine = nib.load(translated_pair["fixed"]).affine
    written = {
        name: nib.load(output / "shifted" / f"{name}.nii.gz") for name in ("warped", "warped_label", "displacement")
    }
    for image in written.values():
        assert np.allclose(image.affine, fixed_affine, atol=1e-5)
    displacement = written["displacement"].get_fdata()[..., 0, :]  # (*spatial, 3), mm RAS
    assert displacement.shape == (28, 24, 16, 3)
    inside = nib.load(translated_pair["fixed_label"]).get_fdata() > 0
    assert np.abs(displacement[inside].mean(0) - TRANSLATION_MM).max() < 0.5
    assert set(np.unique(written["warped_label"].get_fdata())) <= {0.0, 1.0}


@pytest.mark.slow
def test_learned_run_of_a_few_steps(tmp_path: Path) -> None:
    """Affine (GlobalNet) then deformable (U-Net, integrated) on synthetic deformations of a small labelled volume,
    through ``medlab run``: every per-pair measure in the summary and in test_predictions.csv."""
    volume = blobs((24, 24, 24), seed=1)
    label = np.digitize(volume, [0.2, 0.5]).astype(np.uint8)
    write_nifti(tmp_path / "source.nii.gz", volume, np.diag([2.0, 2.0, 2.0, 1.0]))
    write_nifti(tmp_path / "source_label.nii.gz", label, np.diag([2.0, 2.0, 2.0, 1.0]))
    args = ["run", "--config", CPU, "--config", "experiments/registration/brain_unet.yaml", *QUICK,
            f"--experiment.runs_dir={tmp_path / 'runs'}", f"--data.root={tmp_path}", "--data.source=source.nii.gz",
            "--data.source_label=source_label.nii.gz", "--data.downsample=2", "--data.label_values=[1, 2]",
            "--data.label_names=[rim, core]", "--data.num_train=4", "--data.num_val=1", "--data.num_test=2",
            "--data.deformation.control_spacing_mm=16", "--trainer.max_epochs=1",
            "--model.net.init_args.channels=[8, 16, 32]", "--model.net.init_args.strides=[2, 2]",
            "--model.size_divisor=4", "--model.affine_net=research.models.GlobalNet",
            "--model.affine_net.init_args.image_size=[12, 12, 12]", "--model.affine_net.init_args.depth=2",
            "--model.instance_steps=2"]  # fmt: skip
    main(args)
    run_dir = next((tmp_path / "runs" / "registration" / "brain_unet").iterdir())
    summary = read_summary(run_dir)["test"]
    for name in ("dice", "dice_before", "dice_rim", "dice_core", "epe_mm", "epe_before_mm", "folding_pct", "ncc",
                 "ncc_before", "mi", "mi_before", "seconds_per_pair"):  # fmt: skip
        assert math.isfinite(summary[f"test/{name}"]), name
    rows = read_item_results(run_dir)
    assert [row["item"] for row in rows] == ["test_200000", "test_200001"]
    assert {"mean_dice", "mean_dice_before", "dice_rim", "epe_mm", "folding_pct", "seconds_per_pair"} <= set(rows[0])
