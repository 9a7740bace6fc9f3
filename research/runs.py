"""Run folders: ``runs/<experiment>/<run-id>/`` created once, never reused, with an atomically written summary."""

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write to a temporary file beside ``path`` and rename, so a kill never leaves half a file."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
        json.dump(data, handle, indent=2, default=str)
        handle.write("\n")
    os.replace(handle.name, path)


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
