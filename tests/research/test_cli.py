import csv
from pathlib import Path

import pytest
import torch
import yaml

from research.cli import cli
from research.runs import RunError, create_run_dir
from tests.conftest import CPU, EXPERIMENTS, read_item_results, read_summary
from tests.wandb_records import logged, read_records

SMALL = ["--data.num_train=300", "--data.num_val=100", "--data.num_test=100", "--trainer.max_epochs=2"]


def test_run_leaves_a_complete_run_folder_and_an_offline_wandb_run(run_medlab) -> None:
    run_dir = run_medlab("quickstart", *SMALL)
    assert run_dir.parent.name == "quickstart" and run_dir.name.endswith("-seed42")
    assert "class_path: datamodules.SyntheticLesions" in (run_dir / "config.yaml").read_text()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    figures = sorted(p.name for p in (run_dir / "figures").iterdir())
    assert figures == ["confusion_matrix.png", "explanations.png", "roc.png", "train_batch.png"]

    summary = read_summary(run_dir)
    assert summary["seed"] == 42 and summary["epochs_trained"] == 2 and summary["monitor"] == "val/auc"
    assert (run_dir / summary["best_checkpoint"]).is_file() and summary["best_epoch"] in (0, 1)
    assert summary["versions"]["torch"] == torch.__version__.split("+")[0] and summary["wall_time_s"] > 0
    assert set(summary["git"]) == {"commit", "dirty"}
    assert set(summary["test"]) == {f"test/{m}" for m in ("loss", "acc", "auc", "f1", "sensitivity", "specificity")}

    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    val_aucs = [float(r["val/auc"]) for r in rows if r["val/auc"]]
    assert len(val_aucs) == 2 and summary["best_score"] == pytest.approx(max(val_aucs))
    assert [float(r["test/acc"]) for r in rows if r["test/acc"]] == [pytest.approx(summary["test"]["test/acc"])]

    # Each test item's result; `medlab test` of the same checkpoint writes them again into the run's folder.
    item_results = (run_dir / "test_predictions.csv").read_text()
    assert item_results.splitlines()[0] == "item,true,predicted,p_no lesion,p_lesion"
    (run_dir / "test_predictions.csv").unlink()
    cli(["test", "--config", str(run_dir / "config.yaml"), f"--ckpt_path={run_dir / summary['best_checkpoint']}"])
    assert (run_dir / "test_predictions.csv").read_text() == item_results

    (wandb_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    run = logged(wandb_file)
    assert run["summary"]["test/acc"] == pytest.approx(summary["test"]["test/acc"])
    assert len([step for step in run["history"] if "val/auc" in step]) == 2
    assert run["config"]["experiment"]["name"] == "quickstart" and "commit" in run["config"]["medlab"]["git"]
    assert set(run["config"]["medlab"]["git"]) == {"commit", "dirty"}
    assert run["config"]["medlab"]["machine"]["cpu_count"] >= 1 and "gpu_count" in run["config"]["medlab"]["machine"]
    assert run["config"]["medlab"]["versions"]["lightning"] == summary["versions"]["lightning"]
    assert run["summary"]["test/confusion_matrix/_type"] == "images/separated"
    assert len(list(wandb_file.parent.glob("files/media/images/test/*.png"))) == 3  # confusion, ROC, explanations
    assert len(list(wandb_file.parent.glob("files/media/images/train/batch_*.png"))) == 1
    (run_record,) = [r for r in read_records(wandb_file) if r.WhichOneof("record_type") == "run"]
    assert run_record.run.run_group == "quickstart" and run_record.run.display_name == f"quickstart/{run_dir.name}"
    assert set(run_record.run.tags) >= {"seed=42", "data=SyntheticLesions", "synthetic"}


def test_same_seed_repeats_metrics_exactly_and_never_reuses_a_run_folder(run_medlab, tmp_path: Path) -> None:
    runs = tmp_path / "shared-runs"
    first = run_medlab("quickstart", *SMALL, runs_dir=runs)
    first_summary = (first / "summary.json").read_text()
    second = run_medlab("quickstart", *SMALL, runs_dir=runs)
    other_seed = run_medlab("quickstart", *SMALL, "--seed_everything=1", runs_dir=runs)

    assert len({first, second, other_seed}) == 3 and (first / "summary.json").read_text() == first_summary
    assert (first / "metrics.csv").read_text() == (second / "metrics.csv").read_text()
    assert read_summary(first)["test"] == read_summary(second)["test"]
    assert (first / "metrics.csv").read_text() != (other_seed / "metrics.csv").read_text()


def test_a_run_folder_that_exists_is_never_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("research.runs.time.strftime", lambda fmt: "20260101-000000")
    taken = tmp_path / "exp" / "20260101-000000-seed1"
    (taken / "checkpoints").mkdir(parents=True)
    (taken / "checkpoints" / "best.ckpt").write_text("earlier run")
    new = create_run_dir(tmp_path, "exp", 1)
    assert new == tmp_path / "exp" / "20260101-000000-seed1-1"
    assert (taken / "checkpoints" / "best.ckpt").read_text() == "earlier run"


def test_command_line_overrides_reach_the_run(run_medlab) -> None:
    override = ["--trainer.max_epochs=1", "--data.batch_size=50", "--model.decision_threshold=youden"]
    run_dir = run_medlab("quickstart", *SMALL, *override)
    summary = read_summary(run_dir)
    assert summary["epochs_trained"] == 1
    assert "batch_size: 50" in (run_dir / "config.yaml").read_text()
    # The validation split's Youden cut-off travels with the checkpoint; the test's metrics at it are reported too.
    cut, test = summary["test"]["test/val_threshold"], summary["test"]
    rows = read_item_results(run_dir)
    hits = [(float(row["p_lesion"]) >= cut) == (row["true"] == "lesion") for row in rows]
    assert 0 < cut < 1 and test["test/acc@val_threshold"] == pytest.approx(sum(hits) / len(hits))
    assert test["test/acc"] == pytest.approx(sum((row["predicted"] == row["true"]) for row in rows) / len(rows))


@pytest.mark.parametrize(
    "override", ["--data.init_args.batch_sise=8", "--trainer.max_epoch=3", "--model.init_args.optimiser=SGD"]
)
def test_unknown_config_key_is_named_before_anything_runs(
    override: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit):
        cli(
            [
                "run",
                "--config",
                CPU,
                "--config",
                str(EXPERIMENTS / "quickstart.yaml"),
                f"--experiment.runs_dir={tmp_path}",
                override,
            ]
        )
    key = override.split("=")[0].split(".")[-1]
    assert key in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_unknown_key_in_an_experiment_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((EXPERIMENTS / "quickstart.yaml").read_text().replace("image_size: 32", "image_sise: 32"))
    with pytest.raises(SystemExit):
        cli(["run", "--config", CPU, "--config", str(bad), f"--experiment.runs_dir={tmp_path / 'runs'}"])
    assert "image_sise" in capsys.readouterr().err


def test_unknown_dataset_flag_fails_before_training(tmp_path: Path) -> None:
    experiment = str(EXPERIMENTS / "medmnist" / "resnet18.yaml")
    with pytest.raises(
        RunError, match=r"data \(datamodules.MedMNIST\): Unknown MedMNIST 2D flag 'breastmnistt' \(data.flag\)"
    ):
        cli(
            [
                "run",
                "--config",
                CPU,
                "--config",
                experiment,
                "--data.flag=breastmnistt",
                f"--experiment.runs_dir={tmp_path}",
            ]
        )
    assert not list(tmp_path.rglob("*.ckpt"))


def test_breastmnist_recipe_runs_on_the_real_data(run_medlab, shared_data: Path, tmp_path: Path) -> None:
    run_dir = run_medlab("medmnist/resnet18", "--trainer.max_epochs=1", "--trainer.limit_train_batches=2")
    summary = read_summary(run_dir)
    assert summary["experiment"] == "medmnist/breastmnist_resnet18_28"  # named from the data settings
    assert run_dir.parent == tmp_path / "runs" / "medmnist" / "breastmnist_resnet18_28"
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())["experiment"]
    assert saved["name"] == "medmnist/breastmnist_resnet18_28" and saved["tags"][1:] == ["breastmnist", "resnet18_28"]
    assert 0 <= summary["test"]["test/auc"] <= 1 and 0 <= summary["test"]["test/acc"] <= 1


def test_an_experiment_name_that_names_no_data_setting_is_refused(tmp_path: Path) -> None:
    experiment = str(EXPERIMENTS / "medmnist" / "resnet18.yaml")
    with pytest.raises(RunError, match=r"\{flg\} is not a data setting; expected one of balanced, batch_size, .*flag"):
        cli(["run", "--config", CPU, "--config", experiment, "--experiment.name=m/{flg}",
             f"--experiment.runs_dir={tmp_path}"])  # fmt: skip
    assert not any(tmp_path.iterdir())


def test_run_help_names_the_run_command(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli(["run", "--help"])
    out = capsys.readouterr().out
    assert stopped.value.code == 0 and out.startswith("usage: medlab run [-c CONFIG]")
    assert "Fit, test the best checkpoint" in out and "medlab [options] fit" not in out
