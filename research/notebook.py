"""What the notebooks share: CI's small setting, where runs go, and ``make train`` from a kernel."""

import io
import json
import os
import tempfile
import time
from pathlib import Path

import PIL.Image
from IPython.display import Image, Markdown

from research.sweep import run_process
from research.tracking import git_state

# MEDLAB_NOTEBOOK_QUICK=1 (set by `make test` and `make notebooks`): seconds of training, into a temporary folder.
# Without it a notebook runs (or loads) the real experiment under the checkout's runs/.
QUICK = os.environ.get("MEDLAB_NOTEBOOK_QUICK") == "1"
REPO = Path(__file__).resolve().parents[1]
RUNS = Path(tempfile.mkdtemp(prefix="medlab-notebook-")) if QUICK else REPO / "runs"


def medlab_run(experiment: str, *args: str, folder: Path | None = None) -> Path:
    """``make train EXP=experiment ARGS=...`` as its own process (as on the command line; training inside the
    kernel's threads is many times slower), into a new run folder under ``folder`` (default ``RUNS/experiment``);
    prints the run's test table and returns its run folder."""
    configs = [REPO / "experiments" / "trainer" / "cpu.yaml", REPO / "experiments" / f"{experiment}.yaml"]
    run_dir = (folder or RUNS / experiment) / time.strftime("%Y%m%d-%H%M%S")
    printed = run_process([*(f"--config={p}" for p in configs), "--trainer.enable_progress_bar=false", *args], run_dir)
    print(printed[printed.rfind("test metrics") - 60 :])
    return run_dir


def jpeg(path: Path, quality: int = 85) -> Image:
    """A run's figure shown as a JPEG: the noise of EM or CT makes a PNG of a megabyte, a shared notebook's budget."""
    buffer = io.BytesIO()
    PIL.Image.open(path).convert("RGB").save(buffer, "JPEG", quality=quality)
    return Image(data=buffer.getvalue(), format="jpeg")


def metrics_table(test: dict[str, float]) -> Markdown:
    rows = "\n".join(f"| {name} | {value:.4f} |" for name, value in sorted(test.items()))
    return Markdown(f"| metric | value |\n|---|---|\n{rows}")


def provenance(*run_dirs: Path) -> Markdown:
    """What a shared notebook shows came from: the commit it was executed at and each run folder with its own commit
    (from its ``summary.json``)."""
    state = git_state(excluding=("notebooks",))  # executing the notebooks rewrites them
    lines = [f"Executed at commit `{state['commit']}`{' (with uncommitted changes)' if state['dirty'] else ''}, "
             f"{'quick (CI) setting' if QUICK else 'full setting'}; runs shown:", ""]  # fmt: skip
    for run_dir in run_dirs:
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
        shown = os.path.relpath(run_dir, REPO) if Path(run_dir).is_relative_to(REPO) else str(run_dir)
        lines.append(f"- `{shown}`: commit `{summary['git']['commit']}`, seed {summary['seed']}")
    return Markdown("\n".join(lines))
