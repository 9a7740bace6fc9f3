"""``medlab sweep``: one ``medlab run`` per seed and grid point, each in its own process, then their comparison.

``medlab sweep --config trainer.yaml --config experiment.yaml --seeds 0 1 2 --grid model.optimizer.lr=0.01,0.003``
runs 3 x 2 runs; every other argument goes to each ``medlab run`` unchanged. A failed run is reported and the
sweep goes on; the comparison covers the runs that finished.
"""

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console

from research.compare import compare

RUN_LIST_ENV = "MEDLAB_RUN_LIST"  # a file each finished ``medlab run`` appends its run folder to


def run_process(args: list[str], env: dict[str, str] | None = None) -> tuple[Path, str]:
    """``medlab run ARGS`` as its own process: the run folder it made and what it printed; its stderr on failure."""
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as run_list:
        env = {**(env or os.environ), RUN_LIST_ENV: run_list.name}
        result = subprocess.run([sys.executable, "-m", "research.cli", "run", *args], env=env, capture_output=True,
                                text=True)  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"medlab run {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return Path(run_list.read().split()[-1]), result.stdout


def grid_points(grid: list[str]) -> list[list[str]]:
    """``["a=1,2", "b=x"]`` -> ``[["--a=1", "--b=x"], ["--a=2", "--b=x"]]``."""
    axes = []
    for item in grid:
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise ValueError(f"--grid {item!r}: expected KEY=VALUE[,VALUE...], e.g. model.optimizer.lr=0.01,0.003")
        axes.append([f"--{key.removeprefix('--')}={value}" for value in values.split(",")])
    return [list(point) for point in itertools.product(*axes)]


def sweep(run_args: list[str], seeds: list[int], grid: list[str], output: str | None = None) -> Path | None:
    console = Console()
    points = grid_points(grid)
    commands = [[*run_args, *point, f"--seed_everything={seed}"] for point in points for seed in seeds]
    finished: list[Path] = []
    with tempfile.TemporaryDirectory() as scratch:
        run_list = Path(scratch) / "runs.txt"
        env = {**os.environ, RUN_LIST_ENV: str(run_list)}
        env.pop("MEDLAB_RUN_DIR", None)
        for index, command in enumerate(commands, 1):
            console.rule(f"sweep run {index}/{len(commands)}: {' '.join(command[len(run_args) :])}")
            result = subprocess.run([sys.executable, "-m", "research.cli", "run", *command], env=env)
            if result.returncode != 0:
                console.print(f"[red]run {index} failed (exit code {result.returncode}); the sweep goes on")
        if run_list.is_file():
            finished = [Path(line) for line in run_list.read_text().splitlines() if line]
    console.rule(f"sweep: {len(finished)} of {len(commands)} runs finished")
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
    options, run_args = parser.parse_known_args(args)
    finished = sweep(run_args, options.seeds, options.grid, options.output)
    if finished is None:
        raise SystemExit(1)
