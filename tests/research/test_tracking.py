import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from research.tracking import git_state, wandb_offline_reason, wandb_online
from tests.conftest import read_summary
from tests.wandb_records import read_records

SMALL = ["--data.num_train=200", "--data.num_val=50", "--data.num_test=50", "--trainer.max_epochs=1"]


@pytest.mark.parametrize(
    ("env", "online"),
    [
        ({}, False),
        ({"WANDB_API_KEY": "k"}, True),
        ({"WANDB_MODE": "online"}, True),
        ({"WANDB_API_KEY": "k", "WANDB_MODE": "offline"}, False),
        ({"WANDB_API_KEY": "k", "WANDB_MODE": "disabled"}, False),
    ],
)
def test_wandb_is_offline_unless_credentials_or_mode_say_online(
    env: dict, online: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert wandb_online() is online


def _online_at(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", "a" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", url)


def test_unreachable_wandb_host_falls_back_to_offline(run_medlab, monkeypatch: pytest.MonkeyPatch) -> None:
    _online_at("http://127.0.0.1:9", monkeypatch)  # the discard port: connection refused
    with pytest.warns(UserWarning, match=r"W&B is offline for this run: http://127.0.0.1:9 refused the connection"):
        run_dir = run_medlab("quickstart", *SMALL)
    assert (run_dir / "summary.json").is_file()
    assert len(list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))) == 1


def test_online_without_an_api_key_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc either
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    assert wandb_offline_reason() == "no API key for 127.0.0.1: set WANDB_API_KEY or run `.venv/bin/wandb login`"


def test_a_server_that_accepts_and_never_answers_is_given_up_on_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:  # the kernel accepts; nobody ever answers
        monkeypatch.setenv("WANDB_API_KEY", "a" * 40)
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
        started = time.monotonic()
        reason = wandb_offline_reason(timeout=1.0)
        assert "accepted the connection but did not answer within 1 s" in reason
        assert time.monotonic() - started < 5


class _NotWandb(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        self.send_error(503, "not a W&B server")

    def log_message(self, *args: object) -> None:
        pass


def test_wandb_server_that_fails_init_falls_back_to_offline(run_medlab, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that answers 503 makes wandb retry until its init timeout, then the run goes on offline."""
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "5")
    server = HTTPServer(("127.0.0.1", 0), _NotWandb)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _online_at(f"http://127.0.0.1:{server.server_port}", monkeypatch)
        with pytest.warns(UserWarning, match="W&B is offline for this run: the server did not start the run"):
            run_dir = run_medlab("quickstart", *SMALL)
    finally:
        server.shutdown()
    assert (run_dir / "summary.json").is_file()
    assert len(list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))) == 1


def test_wandb_mode_disabled_runs_without_wandb(run_medlab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    run_dir = run_medlab("quickstart", *SMALL)
    assert read_summary(run_dir)["test"]["test/acc"] >= 0 and (run_dir / "metrics.csv").is_file()
    assert not (run_dir / "wandb").exists()


def test_git_state_names_the_commit_of_a_checkout_and_nothing_outside_one(tmp_path: Path) -> None:
    state = git_state()
    assert state["commit"] is None or len(state["commit"]) == 40
    assert git_state(tmp_path) == {"commit": None, "dirty": None}


def test_best_checkpoint_is_a_wandb_model_artifact_when_enabled(run_medlab) -> None:
    run_dir = run_medlab("quickstart", "--data.num_train=128", "--trainer.max_epochs=2", "--experiment.log_model=true")
    summary = read_summary(run_dir)
    (wandb_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    (artifact,) = [r.artifact for r in read_records(wandb_file) if r.WhichOneof("record_type") == "artifact"]
    assert artifact.type == "model" and "best" in artifact.aliases and artifact.name.startswith("model-")
    assert [entry.path for entry in artifact.manifest.contents] == [Path(summary["best_checkpoint"]).name]
    assert json.loads(artifact.metadata)["best_epoch"] == summary["best_epoch"]
