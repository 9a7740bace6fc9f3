"""What the brain registration figures mean, on the 20 test pairs of ``experiments/registration/brain_unet.yaml``:

- the deformations: mean true displacement (mm) over the imaged brain, Dice before registration;
- the ceiling of the Dice measure: the exact displacement's mean Dice with labels warped on the 4 mm grid and at 1 mm;
- the learned model's network alone (``--model.instance_steps=0``) against the run's own test figures (with instance
  optimisation), for the newest ``runs/registration/brain_unet`` run or ``--run``.

    python -m benchmarks.registration_check [--run RUN]
"""

import argparse
import json
import tempfile
from pathlib import Path

import torch
import yaml

from benchmarks.common import print_rows, write_results
from datamodules.registration import Deformation, SyntheticDeformations, refine_field, to_mm
from research.cli import cli
from research.registration import label_dice, warp_label
from research.tracking import finish_wandb

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = REPO / "experiments" / "registration" / "brain_unet.yaml"


def brain_data(**overrides: object) -> SyntheticDeformations:
    settings = yaml.safe_load(EXPERIMENT.read_text())["data"]["init_args"]
    settings = {**settings, "deformation": Deformation(**settings["deformation"]), "num_train": 0, "num_val": 0,
                **overrides}  # fmt: skip
    data = SyntheticDeformations(**settings)
    data.setup("test")
    return data


def ceiling() -> dict[str, float]:
    """Per test pair: |u| over the brain, Dice before, and the exact displacement's Dice at 4 mm and at 1 mm."""
    fine, coarse = brain_data(), brain_data(evaluate_full_resolution=False)
    figures: dict[str, list[float]] = {"true_mm": [], "dice_before": [], "exact_dice_4mm": [], "exact_dice_1mm": []}
    for index in range(len(fine.datasets["test"])):
        pair, pair4 = fine.datasets["test"][index], coarse.datasets["test"][index]
        classes = fine.spec.num_outputs
        inside = pair["fixed"][0] > 0.05
        figures["true_mm"].append(
            float(to_mm(pair["true_ddf"][None], pair["affine"][None])[0].norm(dim=0)[inside].mean())
        )
        figures["dice_before"].append(
            float(label_dice(pair["moving_label"][None], pair["fixed_label"][None], classes)[0, 1:].nanmean())
        )
        exact = refine_field(pair["true_ddf"][None], pair["label_factor"], tuple(pair["fixed_label"].shape[1:]))
        warped = warp_label(pair["moving_label"][None], exact)
        figures["exact_dice_1mm"].append(float(label_dice(warped, pair["fixed_label"][None], classes)[0, 1:].nanmean()))
        warped4 = warp_label(pair4["moving_label"][None], pair4["true_ddf"][None])
        figures["exact_dice_4mm"].append(
            float(label_dice(warped4, pair4["fixed_label"][None], classes)[0, 1:].nanmean())
        )
    return {name: sum(values) / len(values) for name, values in figures.items()}


def network_alone(run: Path) -> dict[str, float]:
    """``medlab test`` of the run's best weights without instance optimisation. Lightning's CLI applies a checkpoint's
    hyperparameters over the command line's, so the setting is changed in a copy of the checkpoint (outside the run
    folder, so the run's own test_predictions.csv stays as it is)."""
    summary = json.loads((run / "summary.json").read_text())
    checkpoint = torch.load(run / summary["best_checkpoint"], weights_only=True, map_location="cpu")
    checkpoint["hyper_parameters"]["instance_steps"] = 0
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "best.ckpt"
        torch.save(checkpoint, copy)
        try:
            medlab = cli(["test", "--config", str(run / "config.yaml"), "--ckpt_path", str(copy),
                          f"--trainer.default_root_dir={folder}", "--trainer.enable_progress_bar=false"])  # fmt: skip
        finally:
            finish_wandb()
        assert medlab.model.instance_steps == 0
        results = medlab.trainer.callback_metrics
    return {name: float(results[f"test/{name}"]) for name in ("dice", "epe_mm", "folding_pct", "seconds_per_pair")}


def main(args: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a registration/brain_unet run folder (default: the newest)")
    options = parser.parse_args(args)
    runs = sorted((REPO / "runs" / "registration" / "brain_unet").glob("*/summary.json"))
    run = options.run or (runs[-1].parent if runs else None)
    figures = ceiling()
    rows = [[name, f"{value:.4f}"] for name, value in figures.items()]
    results = [{"measure": "test pairs", **figures}]
    if run is not None:
        own = json.loads((run / "summary.json").read_text())["test"]
        alone = network_alone(run)
        for name, value in alone.items():
            rows.append([f"network alone: {name}", f"{value:.4f}"])
            rows.append([f"with instance optimisation: {name}", f"{own[f'test/{name}']:.4f}"])
        results.append({"measure": "brain_unet", "run": str(run), "network_alone": alone,
                        "with_instance_optimisation": {k: own[f"test/{k}"] for k in alone}})  # fmt: skip
    else:
        rows.append(["network alone", "not measured (no registration/brain_unet run)"])
    print_rows("brain registration: the 20 test pairs", ["measure", "value"], rows)
    write_results("registration_check", results)


if __name__ == "__main__":
    main()
