"""Framework overhead (after Lightning's parity benchmark): the same model, data, seed and batch order trained by
a plain PyTorch loop written like the classic CIFAR example and by ``medlab run`` as users run it (progress bar,
CSV and offline W&B logging, checkpoints, metrics). Prints the final training loss of both and the median
time-per-epoch ratio medlab / plain, runs interleaved so both see the same machine noise.

    python -m benchmarks.overhead [--epochs 6] [--repeats 2] [--breakdown LeNet] [--background-writes]

``--breakdown`` adds, for the named cases, the rungs between the two (Lightning with a loss-only module, then
medlab's task, then checkpoints + CSV, then W&B, then the progress bar), so the table shows where the time goes.
``--background-writes`` adds medlab with its checkpoints written on a writer thread (what it does on a GPU).
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
from research.tasks import ImageClassifier

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
            "experiment": "medmnist/resnet18",
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


def medlab(
    case: dict[str, Any], epochs: int, runs: Path, progress_bar: bool = True, wandb: bool = True, *extra: str
) -> tuple[list[float], float]:
    """``medlab fit`` as users run it; the rungs of the breakdown turn off the progress bar and W&B; ``extra``:
    more arguments."""
    configs = ["--config", str(REPO / "experiments/trainer/cpu.yaml"), "--config",
               str(REPO / "experiments" / f"{case['experiment']}.yaml")]  # fmt: skip
    mode = os.environ.get("WANDB_MODE")
    os.environ["WANDB_MODE"] = "offline" if wandb else "disabled"
    try:
        run = cli(["fit", *configs, *case["args"], f"--trainer.max_epochs={epochs}", f"--experiment.runs_dir={runs}",
                   f"--trainer.enable_progress_bar={progress_bar}", "--seed_everything=0",
                   "--trainer.callbacks+=benchmarks.overhead.EpochClock", *extra])  # fmt: skip
    finally:
        os.environ["WANDB_MODE"] = mode or "offline"
    (clock,) = [c for c in run.trainer.callbacks if type(c).__name__ == "EpochClock"]
    rows = list(csv.DictReader((run.run_dir / "metrics.csv").open()))
    final = [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")][-1]
    return clock.seconds, final


class LossOnly(ImageClassifier):
    """The same network and optimizer with nothing but the loss: what Lightning itself costs."""

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, targets = batch
        loss = self.loss_fn(self(images), targets)
        self.epoch_loss += loss.item() * len(targets)
        self.epoch_count += len(targets)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, targets = batch
        assert int((self(images).argmax(1) == targets).sum()) >= 0

    def on_train_epoch_start(self) -> None:
        self.epoch_loss, self.epoch_count = 0.0, 0

    def on_validation_epoch_end(self) -> None:
        pass

    def configure_callbacks(self) -> list[Callback]:
        return []


def lightning(case: dict[str, Any], epochs: int, task: type[ImageClassifier]) -> tuple[list[float], float]:
    """A bare ``Trainer`` (no logger, checkpoint, progress bar or summary) fitting ``task``."""
    seed_everything(0, verbose=False)
    data = case["data"]()
    model = task(net=lambda in_channels, num_classes: case["net"](), data=data.spec.as_dict(),
                 optimizer=case["optimizer"])  # fmt: skip
    clock = EpochClock()
    trainer = Trainer(max_epochs=epochs, accelerator="cpu", devices=1, deterministic=True, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[clock], default_root_dir=tempfile.gettempdir())  # fmt: skip
    trainer.fit(model, datamodule=data)
    if isinstance(model, LossOnly):
        return clock.seconds, model.epoch_loss / model.epoch_count
    return clock.seconds, float(trainer.callback_metrics["train/loss_epoch"])


BACKGROUND_WRITES = (
    '--trainer.plugins=[{"class_path": "research.runs.SafeCheckpointIO", "init_args": {"background": true}}]'
)


def sides(
    breakdown: bool, writes: bool = False
) -> dict[str, Callable[[dict[str, Any], int, Path], tuple[list[float], float]]]:
    """What is timed against the plain loop: medlab as users run it, or the rungs leading up to it; ``writes``: also
    medlab with its checkpoints written on a writer thread (its choice on a GPU; on CPU they are written in line)."""
    full = {"medlab": lambda case, epochs, runs: medlab(case, epochs, runs)}
    if writes:
        full["medlab, checkpoints written on a writer thread"] = lambda case, epochs, runs: medlab(
            case, epochs, runs, True, True, BACKGROUND_WRITES
        )
    if not breakdown:
        return full
    return {
        "Lightning, loss only": lambda case, epochs, runs: lightning(case, epochs, LossOnly),
        "+ medlab task (metrics, logging)": lambda case, epochs, runs: lightning(case, epochs, ImageClassifier),
        "+ checkpoints, CSV, run folder": lambda case, epochs, runs: medlab(case, epochs, runs, False, False),
        "+ W&B offline": lambda case, epochs, runs: medlab(case, epochs, runs, False, True),
        "+ progress bar (= medlab)": lambda case, epochs, runs: medlab(case, epochs, runs, True, True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cifar-per-batch", type=int, default=2000, help="images per CIFAR batch file (5 train)")
    parser.add_argument("--cases", nargs="+", help="run only these cases (by name prefix, e.g. LeNet)")
    parser.add_argument("--breakdown", nargs="*", default=[], help="cases (name prefixes) to break down by rung")
    parser.add_argument("--background-writes", action="store_true",
                        help="also time medlab writing its checkpoints on a writer thread")  # fmt: skip
    options = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, case in cases(Path(scratch), options.cifar_per_batch).items():
            if options.cases and not any(name.startswith(prefix) for prefix in options.cases):
                continue
            timed = sides(any(name.startswith(prefix) for prefix in options.breakdown), options.background_writes)
            epochs: dict[str, list[float]] = {"plain": [], **{side: [] for side in timed}}
            losses: dict[str, float] = {}
            for repeat in range(options.repeats):  # interleaved, so drift hits every side
                for side, train in {"plain": lambda c, e, r: plain_loop(c, e), **timed}.items():
                    seconds, losses[side] = train(case, options.epochs, Path(scratch) / f"runs{repeat}")
                    epochs[side] += seconds[1:]  # epoch 0 warms caches and allocators on every side
            plain = statistics.median(epochs["plain"])
            for side in timed:
                framework = statistics.median(epochs[side])
                results.append({
                    "case": name, "side": side, "epochs": options.epochs, "repeats": options.repeats,
                    "plain_final_loss": round(losses["plain"], 6), "final_loss": round(losses[side], 6),
                    "loss_equal_5dp": round(losses["plain"], 5) == round(losses[side], 5),
                    "plain_s_per_epoch": plain, "s_per_epoch": framework, "ratio": framework / plain,
                    "plain_epochs_s": epochs["plain"], "epochs_s": epochs[side],
                })  # fmt: skip
    print_rows(
        "Overhead: median seconds per epoch (epochs after the first, all repeats), against the plain loop",
        ["case", "side", "plain loss", "loss", "equal (5 dp)", "plain s/epoch", "s/epoch", "ratio"],
        [[r["case"], r["side"], f"{r['plain_final_loss']:.6f}", f"{r['final_loss']:.6f}", str(r["loss_equal_5dp"]),
          f"{r['plain_s_per_epoch']:.3f}", f"{r['s_per_epoch']:.3f}", f"{r['ratio']:.3f}"] for r in results],
    )  # fmt: skip
    write_results("overhead", results)


if __name__ == "__main__":
    main()
