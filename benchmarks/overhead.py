"""Framework overhead (after Lightning's parity benchmark): the same model, data, seed and batch order trained by
a plain PyTorch loop written like the classic CIFAR example and by ``medlab run`` as users run it (progress bar,
CSV and offline W&B logging, checkpoints, metrics). Prints the final training loss of both and the median
time-per-epoch ratio medlab / plain, runs interleaved so both see the same machine noise.

    python -m benchmarks.overhead [--epochs 6] [--repeats 2]
"""

import argparse
import csv
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from torch import nn

from benchmarks.common import print_rows, write_results
from datamodules import MedMNIST
from datamodules.cifar import CIFAR10, write_cifar10
from research.cli import cli
from research.models import LeNet, ResNet18

REPO = Path(__file__).resolve().parents[1]


class EpochClock(Callback):
    """Seconds per training epoch, validation and checkpointing included (they end before on_train_epoch_end)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self.started)


def cases(scratch: Path, cifar_per_batch: int) -> dict[str, dict[str, Any]]:
    """What each side builds: medlab from the experiment file, the plain loop by hand, with equal settings."""
    cifar = write_cifar10(scratch / "data", per_batch=cifar_per_batch)  # 5 training batches, CIFAR-shaped
    return {
        "LeNet / CIFAR-shaped": {
            "experiment": "cifar10_lenet",
            "args": [f"--data.root={cifar}", "--data.verify_checksums=false", f"--data.val_size={cifar_per_batch}"],
            "data": lambda: CIFAR10(root=str(cifar), verify_checksums=False, val_size=cifar_per_batch, batch_size=100),
            "net": lambda: LeNet(3, 10, input_size=32),
            "optimizer": lambda params: torch.optim.SGD(params, lr=0.001, momentum=0.9),
        },
        "ResNet-18 (28) / BreastMNIST": {
            "experiment": "medmnist/breastmnist_resnet18_28",
            "args": [],
            "data": lambda: MedMNIST(flag="breastmnist", size=28, batch_size=128),
            "net": lambda: ResNet18(1, 2, small_input=True),
            "optimizer": lambda params: torch.optim.Adam(params, lr=0.001),
        },
    }


def plain_loop(case: dict[str, Callable], epochs: int) -> tuple[list[float], float]:
    """The classic loop: forward, loss, backward, step; a validation pass each epoch; nothing else."""
    seed_everything(0, verbose=False)
    torch.use_deterministic_algorithms(True)  # as experiments/trainer/cpu.yaml
    data = case["data"]()
    net = case["net"]()  # the first draw from the seeded RNG, as in medlab's model
    data.setup("fit")
    train, val = data.train_dataloader(), data.val_dataloader()
    optimizer = case["optimizer"](net.parameters())
    loss_fn = nn.CrossEntropyLoss()
    seconds, epoch_loss = [], float("nan")
    for epoch in range(epochs):
        started = time.perf_counter()
        train.sampler.set_epoch(epoch)  # Lightning does this for medlab
        net.train()
        total, count = 0.0, 0
        for images, targets in train:
            optimizer.zero_grad()
            loss = loss_fn(net(images), targets)
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * len(targets), count + len(targets)
        epoch_loss = total / count
        net.eval()
        with torch.no_grad():
            correct = sum(int((net(images).argmax(1) == targets).sum()) for images, targets in val)
        assert correct >= 0
        seconds.append(time.perf_counter() - started)
    return seconds, epoch_loss


def medlab(case: dict[str, Any], epochs: int, runs: Path) -> tuple[list[float], float]:
    configs = ["--config", str(REPO / "experiments/trainer/cpu.yaml"), "--config",
               str(REPO / "experiments" / f"{case['experiment']}.yaml")]  # fmt: skip
    run = cli(["fit", *configs, *case["args"], f"--trainer.max_epochs={epochs}", f"--experiment.runs_dir={runs}",
               "--seed_everything=0", "--trainer.callbacks+=benchmarks.overhead.EpochClock"])  # fmt: skip
    (clock,) = [c for c in run.trainer.callbacks if type(c).__name__ == "EpochClock"]
    rows = list(csv.DictReader((run.run_dir / "metrics.csv").open()))
    final = [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")][-1]
    return clock.seconds, final


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cifar-per-batch", type=int, default=2000, help="images per CIFAR batch file (5 train)")
    parser.add_argument("--cases", nargs="+", help="run only these cases (by name prefix, e.g. LeNet)")
    options = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, case in cases(Path(scratch), options.cifar_per_batch).items():
            if options.cases and not any(name.startswith(prefix) for prefix in options.cases):
                continue
            plain_epochs, medlab_epochs, losses = [], [], {}
            for repeat in range(options.repeats):  # interleaved, so drift hits both sides
                seconds, losses["plain"] = plain_loop(case, options.epochs)
                plain_epochs += seconds[1:]  # epoch 0 warms caches and allocators on both sides
                seconds, losses["medlab"] = medlab(case, options.epochs, Path(scratch) / f"runs{repeat}")
                medlab_epochs += seconds[1:]
            plain, framework = statistics.median(plain_epochs), statistics.median(medlab_epochs)
            results.append({
                "case": name, "epochs": options.epochs, "repeats": options.repeats,
                "plain_final_loss": round(losses["plain"], 6), "medlab_final_loss": round(losses["medlab"], 6),
                "loss_equal_5dp": round(losses["plain"], 5) == round(losses["medlab"], 5),
                "plain_s_per_epoch": plain, "medlab_s_per_epoch": framework, "ratio": framework / plain,
                "plain_epochs_s": plain_epochs, "medlab_epochs_s": medlab_epochs,
            })  # fmt: skip
    print_rows(
        "Overhead: median seconds per epoch (epochs after the first, all repeats)",
        ["case", "plain loss", "medlab loss", "equal (5 dp)", "plain s/epoch", "medlab s/epoch", "ratio"],
        [[r["case"], f"{r['plain_final_loss']:.6f}", f"{r['medlab_final_loss']:.6f}", str(r["loss_equal_5dp"]),
          f"{r['plain_s_per_epoch']:.3f}", f"{r['medlab_s_per_epoch']:.3f}", f"{r['ratio']:.3f}"] for r in results],
    )  # fmt: skip
    write_results("overhead", results)


if __name__ == "__main__":
    main()
