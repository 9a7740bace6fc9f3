"""``medlab compare`` and ``medlab sweep`` over real run folders."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from research.cli import cli
from research.compare import compare, find_runs, worst_items
from research.sweep import grid_points
from tests.conftest import CPU, EXPERIMENTS, QUICK, REPO, read_summary

TINY = ["--data.num_train=128", "--data.num_val=64", "--data.num_test=64", "--trainer.max_epochs=2"]


def test_compare_tables_runs_groups_seeds_and_overlays_curves(run_medlab, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed in (0, 1):
        for lr in ("0.003", "0.01"):
            run_medlab("quickstart", *TINY, f"--seed_everything={seed}", f"--model.optimizer.init_args.lr={lr}",
                       runs_dir=runs)  # fmt: skip
    console = Console(record=True, width=250)
    folder = compare([runs / "quickstart"], output=tmp_path / "report", console=console)

    printed = console.export_text()
    assert "optimizer.lr=0.003" in printed and "optimizer.lr=0.01" in printed and "mean ± std over seeds" in printed
    markdown = (folder / "compare.md").read_text()
    group_rows = [line for line in markdown.splitlines() if line.startswith("| quickstart | optimizer.lr=")]
    assert len(group_rows) == 2 and all("| 2 | 0, 1 |" in row and " ± " in row for row in group_rows)
    run_rows = [line for line in markdown.splitlines() if line.startswith("| quickstart | 2")]
    assert len(run_rows) == 4
    for lr, row in zip(("0.003", "0.01"), group_rows, strict=True):  # mean ± std over the seeds of one config
        aucs = [read_summary(run.path)["test"]["test/auc"] for run in find_runs([runs])
                if str(run.config["model.init_args.optimizer.init_args.lr"]) == lr]  # fmt: skip
        mean, std = sum(aucs) / 2, abs(aucs[0] - aucs[1]) / 2**0.5
        assert f"optimizer.lr={lr} |" in row and f"{mean:.4f} ± {std:.4f}" in row
    assert (folder / "curves.png").stat().st_size > 10_000 and "<table>" in (folder / "compare.html").read_text()
    # Averaged over a config key as over seeds (the folds of a cross-validation): one group of all four runs.
    folder = compare([runs / "quickstart"], output=tmp_path / "over", console=Console(width=250), over=["optimizer.lr"])
    lines = (folder / "compare.md").read_text().splitlines()
    (group,) = [line for line in lines if line.startswith("| quickstart |  |")]
    aucs = [read_summary(run.path)["test"]["test/auc"] for run in find_runs([runs])]
    assert "| 4 | 0, 1 |" in group and f"{sum(aucs) / 4:.4f} ± " in group

    # Each run's worst test items, from its test_predictions.csv: the lowest probabilities given to the true class.
    run = find_runs([runs / "quickstart"])[0]
    header, rows = worst_items(run, 2)
    with (run.path / "test_predictions.csv").open(newline="") as handle:
        truth = sorted(float(row[f"p_{row['true']}"]) for row in csv.DictReader(handle))
    assert header == ["item", "p(true class)", "true", "predicted"]
    assert [float(row[1]) for row in rows] == [pytest.approx(p, abs=1e-4) for p in truth[:2]]
    markdown = (compare([run.path], output=tmp_path / "worst", worst=2, console=console) / "compare.md").read_text()
    assert "the 2 worst test items" in markdown


def test_compare_refuses_a_folder_without_runs(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no finished runs"):
        compare([tmp_path], output=tmp_path / "report")
    with pytest.raises(FileNotFoundError, match="missing: no such run folder"):
        compare([tmp_path / "missing"])


def test_grid_points_cross_every_value() -> None:
    assert grid_points(["a.b=1,2", "c=x"]) == [["--a.b=1", "--c=x"], ["--a.b=2", "--c=x"]]
    assert grid_points([]) == [[]]
    with pytest.raises(ValueError, match="--grid 'lr': expected KEY=VALUE"):
        grid_points(["lr"])


def test_sweep_runs_each_seed_in_its_own_process_then_compares_them(tmp_path: Path) -> None:
    """One seed (each run is a process of its own, ~13 s of start-up): its folder, its seed, the comparison; groups of
    several seeds are checked in process by ``test_compare_tables_runs_groups_seeds_and_overlays_curves``."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    command = [sys.executable, "-m", "research.cli", "sweep", "--seeds", "3", "--output", "report",
               "--config", CPU, "--config", str(EXPERIMENTS / "quickstart.yaml"), *QUICK, *TINY]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sweep: 1 of 1 runs finished" in result.stdout
    (run,) = find_runs([tmp_path / "runs"])
    assert run.path.name == "01-seed3" and read_summary(run.path)["seed"] == 3
    assert "| quickstart |  | 1 | 3 |" in (tmp_path / "report" / "compare.md").read_text()


def test_wandb_sweep_file_calls_a_medlab_command_that_parses(capsys: pytest.CaptureFixture) -> None:
    sweep = yaml.safe_load((EXPERIMENTS / "sweeps" / "quickstart_wandb.yaml").read_text())
    first = [f"--{key}={spec['values'][0]}" for key, spec in sweep["parameters"].items()]
    assert sweep["metric"]["name"] == "val/auc_best" and sweep["command"][:3] == ["${env}", ".venv/bin/medlab", "run"]
    arguments = [part for part in sweep["command"][3:] if part != "${args}"]
    arguments = [str(REPO / part) if part.endswith(".yaml") else part for part in arguments]
    with pytest.raises(SystemExit) as exit_:  # in this process: the command's parser, without a second start-up
        cli(["run", *arguments, *first, "--print_config"])
    assert exit_.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["seed_everything"] == 0 and printed["model"]["init_args"]["optimizer"]["init_args"]["lr"] == 0.01
