"""Shared fixtures: the real data folder, and an in-process ``medlab`` runner writing into a temporary folder."""

import csv
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import wandb

from datamodules.data_root import resolve_data_root
from research.cli import cli
from research.tracking import finish_wandb

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
CPU = str(EXPERIMENTS / "trainer" / "cpu.yaml")
# Small settings the end-to-end tests share: quick, quiet, still a real fit + test.
QUICK = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    yield
    wandb.teardown()  # the wandb session keeps the mode it started with; each test starts its own


@pytest.fixture(scope="session", autouse=True)
def _cache_in_temporary_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Converted arrays and features go to a folder of this session (commands run by tests inherit it)."""
    before = os.environ.get("MEDLAB_CACHE")
    os.environ["MEDLAB_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if before is None:
        os.environ.pop("MEDLAB_CACHE")
    else:
        os.environ["MEDLAB_CACHE"] = before


@pytest.fixture(scope="session", autouse=True)
def _checkout_stays_clean() -> Iterator[None]:
    """Runs, figures and configs go to temporary folders: nothing a test runs may write into the checkout."""
    before = set(REPO.iterdir())
    yield
    stray = sorted(p.name for p in set(REPO.iterdir()) - before if p.name not in {".pytest_cache", ".ruff_cache"})
    assert not stray, f"tests wrote {stray} into the checkout"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or $MEDLAB_DATA): required in CI, skipped elsewhere when absent."""
    try:
        root = resolve_data_root()
        if not (root / "medmnist" / "breastmnist.npz").is_file():
            raise FileNotFoundError(f"{root}/medmnist/breastmnist.npz is missing")
    except FileNotFoundError as error:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the real data beside the checkout (../shared/data or $MEDLAB_DATA): {error}")
        pytest.skip(f"real data not available: {error}")
    return root


RunMedlab = Callable[..., Path]


@pytest.fixture
def run_medlab(tmp_path: Path) -> RunMedlab:
    """Run ``medlab run --config cpu.yaml --config <experiment> ARGS`` in this process; return the run folder."""

    def run(experiment: str, *args: str, runs_dir: Path | None = None) -> Path:
        runs = runs_dir or tmp_path / "runs"
        config = str(EXPERIMENTS / f"{experiment}.yaml")
        try:
            medlab = cli(["run", "--config", CPU, "--config", config, f"--experiment.runs_dir={runs}", *QUICK, *args])
        finally:
            finish_wandb()
        return medlab.run_dir

    return run


def read_item_results(run_dir: Path) -> list[dict[str, str]]:
    """The rows of a run's ``test_predictions.csv``."""
    with (run_dir / "test_predictions.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())
