"""Run folders: ``runs/<experiment>/<run-id>/`` created once, never reused, with an atomically written summary."""

import csv
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO
from rich.console import Console
from rich.table import Table

RUN_DIR_ENV = "MEDLAB_RUN_DIR"


@dataclass
class Experiment:
    """What names and groups a run: the experiment's own block in its YAML file."""

    name: str = "default"
    project: str = "medlab"
    tags: list[str] = field(default_factory=list)
    runs_dir: str = "runs"
    monitor: str = "val/auc"
    mode: str = "max"
    log_model: bool = False  # the best checkpoint as a W&B model artifact


def create_run_dir(runs_dir: str | Path, experiment: str, seed: int | None) -> Path:
    """A new ``<runs_dir>/<experiment>/<timestamp>-seed<seed>`` folder; an existing one is never reused.

    DDP worker processes (LOCAL_RANK > 0) re-run the command line; they inherit the folder their launcher made.
    """
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited and os.environ.get("LOCAL_RANK", "0") != "0":
        return Path(inherited)
    parent = Path(runs_dir).resolve() / experiment
    parent.mkdir(parents=True, exist_ok=True)
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-seed{seed}"
    for attempt in range(1000):
        path = parent / (stem if attempt == 0 else f"{stem}-{attempt}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        os.environ[RUN_DIR_ENV] = str(path)
        return path
    raise FileExistsError(f"Could not create a new run folder under {parent}")


@contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[IO]:
    """A temporary file beside ``path``, flushed, synced and renamed over it on success: a kill leaves the old
    file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(mode, dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(handle.name, path)


def link_atomic(source: Path, target: Path) -> None:
    """``target`` becomes a hard link to ``source`` (a copy where the file system has no hard links), by rename."""
    temporary = target.with_name(f".{target.name}.link")
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
    except OSError:
        shutil.copyfile(source, temporary)
    os.replace(temporary, target)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    with atomic_file(path) as handle:
        json.dump(data, handle, indent=2, default=str)
        handle.write("\n")


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into a temporary file beside the checkpoint, then rename over it: a kill leaves the old
    checkpoint or the new one, never half of one (Lightning's own transaction stages the file in /tmp, and
    moving it across file systems is a copy)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        with atomic_file(Path(path), "wb") as handle:
            torch.save(checkpoint, handle)


@dataclass
class Resume:
    """A fit that continues a checkpoint of an existing run folder, in that folder and the same W&B run."""

    run_dir: Path
    checkpoint: Path
    epoch: int
    wandb_run_id: str | None


def find_resume(ckpt_path: str | None, config_files: list[str]) -> Resume | None:
    """The run a ``ckpt_path`` continues: a checkpoint under ``<run>/checkpoints/``, or ``last`` with the run's own
    ``<run>/config.yaml`` among the config files. None for a checkpoint outside any run folder (a fine-tune)."""
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        runs = [Path(c).parent for c in config_files if (Path(c).parent / "checkpoints" / "last.ckpt").is_file()]
        if not runs:
            return None
        checkpoint = runs[-1] / "checkpoints" / "last.ckpt"
    else:
        checkpoint = Path(ckpt_path)
    run_dir = checkpoint.resolve().parent.parent
    if checkpoint.resolve().parent.name != "checkpoints" or not (run_dir / "config.yaml").is_file():
        return None
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return Resume(run_dir, checkpoint, state["epoch"], state.get("medlab", {}).get("wandb_run_id"))


def keep_metrics_through(run_dir: Path, epoch: int) -> tuple[list[str], list[dict[str, str]]]:
    """Before a resume: move ``metrics.csv`` aside (``metrics.interrupted.csv``, nothing is deleted) and return its
    header and the rows of epochs up to ``epoch``, which the resumed run continues after."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return [], []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [row for row in reader if row.get("epoch") and int(float(row["epoch"])) <= epoch]
        header = list(reader.fieldnames or [])
    backup = run_dir / "metrics.interrupted.csv"
    for attempt in range(1, 1000):
        if not backup.exists():
            break
        backup = run_dir / f"metrics.interrupted-{attempt}.csv"
    os.replace(path, backup)
    return header, rows


def print_metrics_table(title: str, metrics: dict[str, float], footer: str = "") -> None:
    table = Table(title=title, min_width=len(title) + 4)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in sorted(metrics.items()):
        table.add_row(name, f"{value:.4f}")
    console = Console()
    console.print(table)
    if footer:
        console.print(footer, soft_wrap=True)
