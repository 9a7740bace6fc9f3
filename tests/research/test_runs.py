"""Run folders after things go wrong: failed writes, umask, a failed run, a copied run resumed elsewhere."""

import csv
import errno
import os
import shutil
from pathlib import Path

import pytest
import torch

from research.cli import cli, main
from research.runs import atomic_file, write_json_atomic
from research.tracking import finish_wandb
from tests.conftest import CPU, EXPERIMENTS, QUICK, read_summary

SMALL = ["--data.num_train=128", "--data.num_val=64", "--data.num_test=64"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path: Path) -> None:
    target = tmp_path / "best.ckpt"
    target.write_text("old")
    with pytest.raises(OSError, match="No space left"), atomic_file(target, "w") as handle:
        handle.write("half of the new")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert [p.name for p in tmp_path.iterdir()] == ["best.ckpt"] and target.read_text() == "old"


def test_written_files_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_json_atomic(tmp_path / "summary.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "summary.json").stat().st_mode & 0o777 == 0o640


def test_a_run_that_fails_after_it_started_says_why_in_its_folder(tmp_path: Path) -> None:
    args = ["run", "--config", CPU, "--config", str(EXPERIMENTS / "quickstart.yaml"), *QUICK, *SMALL,
            f"--experiment.runs_dir={tmp_path}", "--trainer.callbacks+=tests.killer.FailAtStart"]  # fmt: skip
    with pytest.raises(RuntimeError, match="the GPU caught fire"):
        main(args)
    (run_dir,) = (tmp_path / "quickstart").iterdir()
    assert (run_dir / "error.txt").read_text().startswith("RuntimeError: the GPU caught fire")
    assert not (run_dir / "summary.json").exists()


def test_a_copied_run_resumes_in_its_copy_counting_all_its_wall_time(run_medlab, tmp_path: Path) -> None:
    original = run_medlab("quickstart", *SMALL, "--trainer.max_epochs=2")
    copy = tmp_path / "elsewhere" / original.name
    shutil.copytree(original, copy)
    # wandb-core keeps appending to the first run's debug-core.log while the process lives: not the run's content
    before = {p: p.read_bytes() for p in original.rglob("*") if p.is_file() and p.name != "debug-core.log"}
    last = copy / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    checkpoint["medlab"]["wall_time_s"] = 1000.0  # as if the first part had run for 1000 s
    last.unlink()  # may be a hard link to the best checkpoint: replace it, not its target
    torch.save(checkpoint, last)
    leftover = copy / "checkpoints" / ".best-epoch001.ckpt.x1y2z3"  # a write that a full disk cut short
    leftover.write_bytes(b"partial")

    try:
        cli(["run", "--config", str(copy / "config.yaml"), "--ckpt_path=last", "--trainer.max_epochs=3", *QUICK])
    finally:
        finish_wandb()
    summary = read_summary(copy)
    assert summary["epochs_trained"] == 3 and summary["wall_time_s"] >= 1000
    assert (copy / summary["best_checkpoint"]).is_file() and summary["best_checkpoint"].startswith("checkpoints/")
    assert summary["best_score"] == max(float(r["val/auc"]) for r in csv.DictReader((copy / "metrics.csv").open())
                                        if r["val/auc"])  # fmt: skip
    assert not leftover.exists()
    after = {p: p.read_bytes() for p in original.rglob("*") if p.is_file() and p.name != "debug-core.log"}
    assert [str(p) for p in set(before) | set(after) if before.get(p) != after.get(p)] == []


def test_classifier_predict_writes_one_row_per_item_into_its_run_folder(run_medlab, capsys) -> None:
    run_dir = run_medlab("quickstart", *SMALL, "--trainer.max_epochs=1")
    capsys.readouterr()
    main(["predict", "--config", str(run_dir / "config.yaml"), f"--ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
          *QUICK])  # fmt: skip
    path = run_dir / "predictions" / "predictions.csv"
    assert f"64 predictions written to {path}" in capsys.readouterr().out
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 64 and list(rows[0]) == ["index", "predicted", "p_no lesion", "p_lesion"]
    assert all(abs(float(r["p_no lesion"]) + float(r["p_lesion"]) - 1) < 1e-5 for r in rows)
    assert {r["predicted"] for r in rows} <= {"no lesion", "lesion"}


def test_a_checkpoint_outside_a_run_folder_starts_a_new_run_from_its_weights_only(run_medlab, tmp_path: Path) -> None:
    original = run_medlab("quickstart", *SMALL, "--trainer.max_epochs=2")
    weights = tmp_path / "shared" / "pretrained.ckpt"
    weights.parent.mkdir()
    shutil.copy(original / read_summary(original)["best_checkpoint"], weights)
    tuned = run_medlab("quickstart", *SMALL, "--trainer.max_epochs=2", f"--ckpt_path={weights}")
    summary = read_summary(tuned)
    assert summary["epochs_trained"] == 2 and summary["initial_weights"] == str(weights)
    epochs = [int(r["epoch"]) for r in csv.DictReader((tuned / "metrics.csv").open()) if r["val/auc"]]
    assert epochs == [0, 1]  # a new run: epoch 0 onwards, a fresh optimizer, this config's settings

    def first_loss(run_dir: Path) -> float:
        return next(float(r["train/loss_epoch"]) for r in csv.DictReader((run_dir / "metrics.csv").open())
                    if r["train/loss_epoch"])  # fmt: skip

    assert first_loss(tuned) < first_loss(original)  # it started from trained weights
    assert f"ckpt_path: {weights}" in (tuned / "config.yaml").read_text()


def test_testing_a_checkpoint_writes_nothing_where_the_command_runs(
    run_medlab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = run_medlab("quickstart", *SMALL, "--trainer.max_epochs=1")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for command in ("test", "validate"):
        main([command, "--config", str(run_dir / "config.yaml"), f"--ckpt_path={run_dir / 'checkpoints/last.ckpt'}",
              *QUICK])  # fmt: skip
    assert list(elsewhere.iterdir()) == []
