"""What every benchmark shares: the machine description and the results file."""

import os
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from research.runs import write_json_atomic
from research.tables import print_table
from research.tracking import machine, package_versions

RESULTS = Path(os.environ.get("MEDLAB_BENCH_RESULTS", Path(__file__).resolve().parent / "results"))


def write_results(name: str, results: list[dict[str, Any]]) -> Path:
    """``benchmarks/results/<name>.json`` (or ``$MEDLAB_BENCH_RESULTS``): the figures, machine and versions."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(),
               "versions": package_versions(), "results": results}  # fmt: skip
    write_json_atomic(path, payload)
    Console().print(f"written: {path}")
    return path


def print_rows(title: str, header: list[str], rows: list[list[str]]) -> None:
    print_table(title, header, rows, Console(width=160))
    described = machine()
    print(f"machine: {described['cpu']} ({described['cpu_count']} cores, {described['torch_threads']} torch threads),"
          f" GPU: {described['gpu'] or 'none'}")  # fmt: skip
