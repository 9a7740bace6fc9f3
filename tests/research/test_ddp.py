import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from lightning.pytorch import Trainer

from datamodules import SyntheticLesions
from research.callbacks import TestResultsWriter
from research.tasks import ImageClassifier
from tests.conftest import CPU, EXPERIMENTS, QUICK, REPO, read_item_results, read_summary

# 101 test images: the two processes get 51 and 50, so a padding sampler would count one image twice.
DATA = {"num_train": 300, "num_val": 99, "num_test": 101}


RUN = [
    "run", "--config", CPU, "--config", str(EXPERIMENTS / "quickstart.yaml"), "--trainer.max_epochs=2",
    *[f"--data.{key}={value}" for key, value in DATA.items()], *QUICK,
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def environment() -> dict[str, str]:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONPATH": str(REPO)}
    env.pop("MEDLAB_RUN_DIR", None)
    return env


@pytest.fixture(scope="module")
def one_node(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Two processes on one machine, started by Lightning: the run folder and what the command printed."""
    runs = tmp_path_factory.mktemp("one_node")
    command = [sys.executable, "-m", "research.cli", *RUN, "--config", str(EXPERIMENTS / "trainer" / "ddp.yaml"),
               "--trainer.accelerator=cpu", "--trainer.devices=2", f"--experiment.runs_dir={runs}"]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, env=environment(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (runs / "quickstart").iterdir()
    return run_dir, result.stderr


def test_ddp_on_two_cpu_processes_gives_the_same_test_metrics_as_one_process(
    tmp_path: Path, one_node: tuple[Path, str]
) -> None:
    run_dir, stderr = one_node
    summary = read_summary(run_dir)
    assert "GLOBAL_RANK: 1" in stderr or "distributed_backend=gloo" in stderr

    model = ImageClassifier.load_from_checkpoint(run_dir / summary["best_checkpoint"])
    trainer = Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, deterministic=True,
        default_root_dir=tmp_path / "single",
    )  # fmt: skip
    trainer.callbacks.append(TestResultsWriter())
    single = trainer.test(model, datamodule=SyntheticLesions(**DATA), verbose=False)[0]
    assert set(single) == set(summary["test"])
    for name, value in single.items():
        assert summary["test"][name] == pytest.approx(value, abs=1e-6), name

    # Each test image's row, gathered from both processes in the test split's order, as one process writes it.
    rows, single_rows = read_item_results(run_dir), read_item_results(tmp_path / "single")
    assert [row["item"] for row in rows] == [str(i) for i in range(DATA["num_test"])]
    assert [(r["true"], r["predicted"]) for r in rows] == [(r["true"], r["predicted"]) for r in single_rows]
    for row, alone in zip(rows, single_rows, strict=True):
        assert float(row["p_lesion"]) == pytest.approx(float(alone["p_lesion"]), abs=1e-6)
    accuracy = sum(row["true"] == row["predicted"] for row in rows) / len(rows)
    assert accuracy == pytest.approx(summary["test"]["test/acc"], abs=1e-6)


def test_two_torchrun_nodes_give_the_metrics_of_two_processes_on_one_node(
    tmp_path: Path, one_node: tuple[Path, str]
) -> None:
    """``torchrun --nnodes=2 --nproc-per-node=1`` twice, a rendezvous on loopback: the same world size as one node's
    two processes, one run folder, one summary, one W&B run."""
    port = free_port()
    launch = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=7", "--local-addr=127.0.0.1", "-m", "research.cli", *RUN,
        "--config", str(EXPERIMENTS / "trainer" / "multinode.yaml"), "--trainer.accelerator=cpu",
        f"--experiment.runs_dir={tmp_path}",
    ]  # fmt: skip
    nodes = [subprocess.Popen(launch, cwd=REPO, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]  # fmt: skip
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]

    (run_dir,) = (tmp_path / "quickstart").iterdir()
    assert run_dir.name == "job7-seed42"
    assert len(list(run_dir.glob("wandb/offline-run-*"))) == 1
    assert sum("test metrics" in output for output in outputs) == 1  # one summary, printed by global rank 0
    expected = read_summary(one_node[0])["test"]
    assert read_summary(run_dir)["test"] == pytest.approx(expected, abs=1e-6)
