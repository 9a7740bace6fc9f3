"""W&B on every run (offline unless credentials or WANDB_MODE=online say otherwise) plus a CSV log beside it."""

import os
import platform
import socket
import subprocess
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger

from research.runs import Resume, keep_metrics_through

PACKAGES = (
    "medlab",
    "torch",
    "torchvision",
    "lightning",
    "torchmetrics",
    "monai",
    "albumentations",
    "medmnist",
    "wandb",
    "numpy",
)
_CHECKOUT = Path(__file__).resolve().parents[1]


def wandb_online() -> bool:
    """Online only when asked for (WANDB_MODE=online) or when an API key is set and the mode is not forced."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun"):
        return False
    return mode == "online" or bool(os.environ.get("WANDB_API_KEY"))


def wandb_reachable(timeout: float = 5.0) -> bool:
    """Whether the W&B server (``WANDB_BASE_URL``) accepts a TCP connection: a quick check before a slow init."""
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def _go_offline(reason: str, run_dir: Path) -> None:
    import wandb

    warnings.warn(f"W&B is unreachable ({reason}); logging offline to {run_dir}/wandb", stacklevel=3)
    os.environ["WANDB_MODE"] = "offline"  # the wandb session reads its mode from here, whatever init is given
    wandb.teardown()


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_state(path: Path = _CHECKOUT) -> dict[str, Any]:
    """The commit the code ran from and whether the tree had uncommitted changes (None outside git)."""

    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(["git", *args], cwd=path, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """The hardware a figure was measured on: CPU model and cores, GPU model and count."""
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "host": platform.node(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpus[0] if gpus else None,
        "gpu_count": len(gpus),
    }


def run_metadata() -> dict[str, Any]:
    return {"git": git_state(), "versions": package_versions(), "machine": machine()}


def make_loggers(
    run_dir: Path,
    run_name: str,
    project: str,
    group: str,
    tags: list[str],
    config: dict[str, Any],
    resume: Resume | None = None,
) -> list[Logger]:
    """CSV (``run_dir/metrics.csv``) first, so ``trainer.log_dir`` is the run folder; W&B under ``run_dir/wandb``
    (none with ``WANDB_MODE=disabled``).

    The CSV is flushed at every logging step, so a killed run leaves every metric it logged. A resumed run keeps
    the rows of the epochs its checkpoint covers and continues the W&B run whose id the checkpoint holds.
    """
    header, rows = keep_metrics_through(run_dir, resume.epoch) if resume else ([], [])
    csv = CSVLogger(save_dir=run_dir, name="", version="", flush_logs_every_n_steps=1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Experiment logs directory")  # metrics.csv was moved aside
        writer = csv.experiment  # claims the folder now (a new run's is still empty)
    if rows:
        writer.metrics_keys = header
        writer.metrics = [{k: v for k, v in row.items() if v != ""} for row in rows]
        writer.save()
    if os.environ.get("WANDB_MODE", "").lower() == "disabled":  # W&B's own switch: no W&B run at all
        return [csv]
    settings = {"project": project, "group": group, "tags": tags, "name": run_name, "save_dir": str(run_dir),
                "config": config, "job_type": "train"}  # fmt: skip
    if resume and resume.wandb_run_id:
        settings |= {"id": resume.wandb_run_id, "resume": "allow"}
    online = wandb_online()
    if online and not wandb_reachable():
        _go_offline(f"no connection to {os.environ.get('WANDB_BASE_URL', 'https://api.wandb.ai')}", run_dir)
        online = False
    if online:
        import wandb

        # wandb waits 90 s by default for a server that answers with errors; a training run should not.
        timeout = float(os.environ.get("WANDB_INIT_TIMEOUT", 30))
        wandb_logger = WandbLogger(offline=False, settings=wandb.Settings(init_timeout=timeout), **settings)
        try:
            wandb_logger.experiment  # noqa: B018 - starts the run now, so a network failure shows here
        except Exception as error:  # wandb raises several types for a server that answers badly
            _go_offline(str(error).splitlines()[0][:200], run_dir)
            wandb_logger = WandbLogger(offline=True, **settings)
    else:
        wandb_logger = WandbLogger(offline=True, **settings)
    return [csv, wandb_logger]


def log_checkpoint_artifact(loggers: list[Logger], checkpoint: Path, metadata: dict[str, Any]) -> None:
    """The best checkpoint as a W&B model artifact (alias ``best``); offline runs upload it at ``wandb sync``.

    Lightning's ``log_model`` refuses offline runs, and most runs here are offline, so this logs it directly.
    """
    import wandb

    for logger in loggers:
        if isinstance(logger, WandbLogger):
            run = logger.experiment
            artifact = wandb.Artifact(f"model-{run.id}", type="model", metadata=metadata)
            artifact.add_file(str(checkpoint), name=checkpoint.name)
            run.log_artifact(artifact, aliases=["best"])


def finish_wandb(exit_code: int = 0) -> None:
    """Close the W&B run if one is open, so its summary is written and the next run in a sweep starts clean."""
    import wandb

    if wandb.run is not None:
        wandb.finish(exit_code=exit_code)
