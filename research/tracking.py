"""W&B on every run (offline unless credentials or WANDB_MODE=online say otherwise) plus a CSV log beside it."""

import netrc
import os
import platform
import socket
import subprocess
import urllib.error
import urllib.request
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from research.runs import Resume, keep_metrics_before

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


def wandb_offline_reason(timeout: float = 5.0) -> str | None:
    """Why an online W&B run cannot start (no API key; the server refuses, does not answer within ``timeout`` s, or
    cannot be found), or None when the server (``WANDB_BASE_URL``) answers HTTP at all. A quick check: wandb's own
    init waits 30 s for a silent server and its finish 20 s more."""
    base = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    host = urlparse(base).hostname or base
    if not os.environ.get("WANDB_API_KEY"):
        try:
            known = netrc.netrc().authenticators(host)
        except (OSError, netrc.NetrcParseError):
            known = None
        if not known:
            return f"no API key for {host}: set WANDB_API_KEY or run `.venv/bin/wandb login`"
    try:
        urllib.request.urlopen(urllib.request.Request(base, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return None  # it answered, even if with an error status: the server is there
    except TimeoutError:
        return f"{base} accepted the connection but did not answer within {timeout:.0f} s"
    except urllib.error.URLError as error:
        reason = error.reason
        if isinstance(reason, ConnectionRefusedError):
            return f"{base} refused the connection"
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return f"{base} did not answer within {timeout:.0f} s"
        return f"{base} cannot be reached ({reason})"
    except OSError as error:
        return f"{base} cannot be reached ({error})"
    return None


def _go_offline(reason: str, run_dir: Path) -> None:
    import wandb

    warnings.warn(
        f"W&B is offline for this run: {reason}. Logging to {run_dir}/wandb; upload it later with wandb sync",
        stacklevel=3,
    )
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


def git_state(path: Path = _CHECKOUT, excluding: tuple[str, ...] = ()) -> dict[str, Any]:
    """The commit the code ran from and whether the tree had uncommitted changes (None outside git), not counting
    changes under the folders ``excluding`` names."""

    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(["git", *args], cwd=path, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = (
        git("status", "--porcelain", "--untracked-files=no", "--", ".", *[f":!{x}" for x in excluding])
        if commit
        else None
    )
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
    the rows logged before its checkpoint and continues the W&B run whose id the checkpoint holds.
    """
    header, rows = keep_metrics_before(run_dir, resume.global_step) if resume and rank_zero_only.rank == 0 else ([], [])
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
    reason = wandb_offline_reason() if online else None
    if reason:
        _go_offline(reason, run_dir)
        online = False
    if online:
        import wandb

        # wandb waits 90 s by default for a server that answers with errors; a training run should not.
        timeout = float(os.environ.get("WANDB_INIT_TIMEOUT", 30))
        wandb_logger = WandbLogger(offline=False, settings=wandb.Settings(init_timeout=timeout), **settings)
        try:
            wandb_logger.experiment  # noqa: B018 - starts the run now, so a network failure shows here
        except Exception as error:  # wandb raises several types for a server that answers badly
            _go_offline(f"the server did not start the run ({str(error).splitlines()[0][:200]})", run_dir)
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


def log_images_to_run(run_dir: Path, run_id: str | None, project: str, images: dict[str, Path]) -> None:
    """Add images to a finished run's W&B run (``medlab explain``'s panel): the same run, online or offline as a new
    run would be (an offline one joins the run at ``wandb sync``); nothing without a W&B run or with W&B disabled."""
    if run_id is None or os.environ.get("WANDB_MODE", "").lower() == "disabled":
        return
    import wandb

    online = wandb_online() and wandb_offline_reason() is None
    with wandb.init(id=run_id, resume="allow", project=project, dir=str(run_dir), mode="online" if online else
                    "offline", job_type="explain", settings=wandb.Settings(silent=True)) as run:  # fmt: skip
        run.log({key: wandb.Image(str(path)) for key, path in images.items()})
