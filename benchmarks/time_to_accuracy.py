"""Time-to-accuracy on BreastMNIST (28 px): wall time of ``medlab run`` with the MedMNIST v2 recipe
(``experiments/medmnist/resnet18.yaml``: ResNet-18 (28), 100 epochs) and with the faster recipe
(``experiments/medmnist/breastmnist_fast.yaml``), test AUC and ACC of each seed's best-validation checkpoint, next
to the rows of the MedMNIST v2 paper's BreastMNIST table. Wall time is the whole command as a user waits for it
(start-up, training, validation, checkpoints, offline W&B, the test); the test split decides nothing.

    python -m benchmarks.time_to_accuracy [--seeds 0 1 2] [--paper-seeds 0] [--trainer gpu]

``make bench`` runs the 100-epoch recipe with one seed (13-14 minutes on 2 cores); ``--paper-seeds 0 1 2``
gives it three, as docs/benchmarks.md reports.
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from statistics import mean, stdev
from typing import Any

from benchmarks.common import print_rows, write_results
from research.sweep import run_process

REPO = Path(__file__).resolve().parents[1]
RECIPES = {
    "MedMNIST v2 (ResNet-18 (28), 100 epochs)": "medmnist/resnet18",
    "medlab fast (ResNet-18 (28) width 16, augmentation, one-cycle, 40 epochs)": "medmnist/breastmnist_fast",
}
# MedMNIST v2 (Yang et al., Scientific Data 2023), Table: BreastMNIST test AUC and ACC.
PAPER = {
    "ResNet-18 (28)": (0.901, 0.863),
    "ResNet-18 (224)": (0.891, 0.833),
    "ResNet-50 (28)": (0.857, 0.812),
    "ResNet-50 (224)": (0.866, 0.842),
    "auto-sklearn": (0.836, 0.803),
    "AutoKeras": (0.871, 0.831),
    "Google AutoML Vision": (0.919, 0.861),
}
TARGET_AUC, TARGET_ACC = PAPER["ResNet-18 (28)"]


def run(experiment: str, seed: int, runs_dir: Path, extra: list[str], trainer: str = "cpu") -> dict[str, Any]:
    """One ``medlab run`` as its own process (``experiments/trainer/<trainer>.yaml``); its summary and the wall time
    the command took."""
    args = ["--config", str(REPO / "experiments" / "trainer" / f"{trainer}.yaml"), "--config",
            str(REPO / "experiments" / f"{experiment}.yaml"), f"--seed_everything={seed}",
            "--trainer.enable_progress_bar=false", *extra]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"), "WANDB_SILENT": "true"}
    started = time.perf_counter()
    run_dir = runs_dir / experiment / f"seed{seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_process(args, run_dir, env)
    wall = time.perf_counter() - started
    summary = json.loads((run_dir / "summary.json").read_text())
    outcome = {"seed": seed, "wall_s": wall, "auc": summary["test"]["test/auc"], "acc": summary["test"]["test/acc"],
               "best_epoch": summary["best_epoch"], "epochs": summary["epochs_trained"],
               "run": str(run_dir)}  # fmt: skip
    print(f"{experiment} seed {seed}: test AUC {outcome['auc']:.4f} ACC {outcome['acc']:.4f}, best epoch "
          f"{outcome['best_epoch']} of {outcome['epochs']}, {wall:.0f} s", flush=True)  # fmt: skip
    return outcome


def spread(values: list[float], digits: int = 3) -> str:
    """Mean ± sample std (just the value for one run)."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{mean(values):.{digits}f} ± {stdev(values):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the fast recipe")
    parser.add_argument("--paper-seeds", type=int, nargs="*", default=[0], help="seeds of the 100-epoch recipe")
    parser.add_argument("--runs-dir", type=Path, help="keep the run folders here (default: a temporary folder)")
    parser.add_argument("--trainer", default="cpu", choices=["cpu", "gpu"],
                        help="experiments/trainer/<name>.yaml (gpu: one GPU, bf16 mixed precision)")  # fmt: skip
    parser.add_argument("--max-epochs", type=int, help="cut every recipe short (a smoke test, not a benchmark)")
    parser.add_argument("--limit-batches", type=int, help="train and validate on this many batches an epoch (smoke)")
    options = parser.parse_args()
    extra = [f"--trainer.max_epochs={options.max_epochs}"] if options.max_epochs else []
    if options.limit_batches:
        extra += [f"--trainer.limit_train_batches={options.limit_batches}",
                  f"--trainer.limit_val_batches={options.limit_batches}"]  # fmt: skip
    seeds = dict(zip(RECIPES, [options.paper_seeds, options.seeds], strict=True))
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        runs_dir = options.runs_dir or Path(scratch)
        for recipe, experiment in RECIPES.items():
            if not seeds[recipe]:
                continue
            runs = [run(experiment, seed, runs_dir, extra, options.trainer) for seed in seeds[recipe]]
            auc, acc = mean([r["auc"] for r in runs]), mean([r["acc"] for r in runs])
            results.append({
                "recipe": recipe, "experiment": experiment, "seeds": seeds[recipe], "runs": runs,
                "wall_s_mean": mean([r["wall_s"] for r in runs]), "test_auc_mean": auc, "test_acc_mean": acc,
                "reaches_paper_resnet18_28": auc >= TARGET_AUC and acc >= TARGET_ACC,
                "beats_every_paper_row": all(auc > a and acc > c for a, c in PAPER.values()),
            })  # fmt: skip
    paper_wall = next((r["wall_s_mean"] for r in results if r["experiment"] == "medmnist/resnet18"), None)
    rows = []
    for r in results:
        runs = r["runs"]
        speedup = f"{paper_wall / r['wall_s_mean']:.1f}x" if paper_wall else "-"
        rows.append([r["recipe"], ", ".join(map(str, r["seeds"])), spread([r["epochs"] for r in runs], 0),
                     spread([r["wall_s"] for r in runs], 0), speedup, spread([r["auc"] for r in runs]),
                     spread([r["acc"] for r in runs]), "yes" if r["reaches_paper_resnet18_28"] else "no"])  # fmt: skip
    rows += [[f"paper: {name}", "", "", "", "", f"{auc:.3f}", f"{acc:.3f}", ""] for name, (auc, acc) in PAPER.items()]
    print_rows(
        "Time-to-accuracy, BreastMNIST 28 px: mean ± std over seeds; test figures of the best-validation checkpoint",
        ["recipe", "seeds", "epochs run", "wall s", "vs paper recipe", "test AUC", "test ACC",
         f"reaches AUC {TARGET_AUC} and ACC {TARGET_ACC}"],
        rows,
    )  # fmt: skip
    write_results("time_to_accuracy", results)


if __name__ == "__main__":
    main()
