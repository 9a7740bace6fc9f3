"""``medlab sweep``: one ``medlab run`` per seed and grid point, each in its own process, then their comparison.

``medlab sweep --config trainer.yaml --config experiment.yaml --seeds 0 1 2 --grid model.optimizer.lr=0.01,0.003``
runs 3 x 2 runs; every other argument goes to each ``medlab run`` unchanged. Each run gets its folder from the sweep
(``--experiment.run_dir``): ``<runs-dir>/<NN>-seed<seed>``, by default under ``runs/sweeps/<time>/``. A failed run is
reported and the sweep goes on; the comparison covers the runs that finished.
"""

import argparse
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from research.compare import compare
from research.runs import RUN_DIR_ENV


def run_command(args: list[str], run_dir: Path) -> list[str]:
    """``medlab run ARGS`` into the new folder ``run_dir``, with this Python (a DDP launch inherits no folder)."""
    return [sys.executable, "-m", "research.cli", "run", *args, f"--experiment.run_dir={run_dir}"]


def run_process(args: list[str], run_dir: Path, env: dict[str, str] | None = None) -> str:
    """``medlab run ARGS`` as its own process, into the new folder ``run_dir``: what it printed; its stderr on
    failure."""
    # Its output is kept as text: no colour codes, even from a Jupyter kernel (which forces colour).
    env = {k: v for k, v in (env or os.environ).items() if k not in (RUN_DIR_ENV, "FORCE_COLOR", "CLICOLOR_FORCE")}
    result = subprocess.run(run_command(args, run_dir), env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"medlab run {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def grid_points(grid: list[str]) -> list[list[str]]:
    """``["a=1,2", "b=x"]`` -> ``[["--a=1", "--b=x"], ["--a=2", "--b=x"]]``."""
    axes = []
    for item in grid:
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise ValueError(f"--grid {item!r}: expected KEY=VALUE[,VALUE...], e.g. model.optimizer.lr=0.01,0.003")
        axes.append([f"--{key.removeprefix('--')}={value}" for value in values.split(",")])
    return [list(point) for point in itertools.product(*axes)]


def sweep(
    run_args: list[str], seeds: list[int], grid: list[str], output: str | None = None, runs_dir: str | None = None
) -> Path | None:
    console = Console()
    points = grid_points(grid)
    runs = [(point, seed) for point in points for seed in seeds]
    folder = Path(runs_dir or Path("runs") / "sweeps" / time.strftime("%Y%m%d-%H%M%S"))
    finished: list[Path] = []
    for index, (point, seed) in enumerate(runs, 1):
        run_dir = folder / f"{index:02d}-seed{seed}"
        setting = [*point, f"--seed_everything={seed}"]
        console.rule(f"sweep run {index}/{len(runs)}: {' '.join(setting)}")
        command = run_command([*run_args, *setting], run_dir)
        result = subprocess.run(command, env={k: v for k, v in os.environ.items() if k != RUN_DIR_ENV})
        if result.returncode == 0:
            finished.append(run_dir)
        else:
            console.print(f"[red]run {index} failed (exit code {result.returncode}); the sweep goes on")
    console.rule(f"sweep: {len(finished)} of {len(runs)} runs finished, in {folder}")
    if not finished:
        return None
    return compare(finished, output)


def main(args: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="medlab sweep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="one run per seed (default 0)")
    parser.add_argument("--grid", action="append", default=[], help="KEY=V1,V2: one run per value (repeatable)")
    parser.add_argument("--output", help="where to write the comparison (default runs/comparisons/<time>)")
    parser.add_argument("--runs-dir", help="the folder of the sweep's runs (default runs/sweeps/<time>)")
    options, run_args = parser.parse_known_args(args)
    finished = sweep(run_args, options.seeds, options.grid, options.output, options.runs_dir)
    if finished is None:
        raise SystemExit(1)
