"""Run folders: ``runs/<experiment>/<run-id>/`` created once, never reused, with an atomically written summary."""

import csv
import json
import os
import pickle
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
from lightning.pytorch.utilities import rank_zero_only
from lightning_utilities.core.apply_func import apply_to_collection

RUN_DIR_ENV = "MEDLAB_RUN_DIR"


class RunError(Exception):
    """A run cannot start or go on as asked (a checkpoint that cannot be used, a missing split): said in one line."""


@dataclass
class Experiment:
    """What names and groups a run: the experiment's own block in its YAML file.

    Args:
        name: the experiment's name: its runs go to ``<runs_dir>/<name>/`` and form one W&B group. ``{option}``
            is filled from the data settings, so one recipe names each dataset's runs apart
            (``medmnist/{flag}_resnet18_{size}`` -> ``medmnist/breastmnist_resnet18_28``).
        project: the W&B project.
        tags: W&B tags (the seed and the DataModule are added); ``{option}`` is filled as in ``name``.
        runs_dir: the folder of all runs.
        monitor: the validation metric that picks the best checkpoint (the one ``medlab run`` tests); ``null`` for a run
            without validation (a refit on all training data for a fixed number of epochs): the last epoch's is tested.
        mode: ``max`` or ``min``: which way ``monitor`` improves.
        log_model: log the best checkpoint as a W&B model artifact.
        run_dir: the run folder to create, for a launcher that must know it (``medlab sweep``); it must not exist.
    """

    name: str = "default"
    project: str = "medlab"
    tags: list[str] = field(default_factory=list)
    runs_dir: str = "runs"
    monitor: str | None = "val/auc"
    mode: Literal["min", "max"] = "max"
    log_model: bool = False
    run_dir: str | None = None


def fill_from_data(experiment: Experiment, data_settings: Any) -> None:
    """``{option}`` in the experiment's name and tags replaced by the data setting of that name (``{flag}``,
    ``{labels.num_classes}``); one that names no data setting is refused, naming it."""
    settings = vars(data_settings) if data_settings is not None else {}
    try:
        experiment.name = experiment.name.format_map(settings)
        experiment.tags = [tag.format_map(settings) for tag in experiment.tags]
    except (KeyError, AttributeError, IndexError, ValueError) as error:
        raise RunError(
            f"experiment.name {experiment.name!r} or its tags: {{{error.args[0]}}} is not a data setting; "
            f"expected one of {', '.join(sorted(settings))}"
        ) from None


def launch_id() -> str | None:
    """The id every process of one multi-process launch shares, and keeps when the job is requeued: SLURM's job id
    (``<job>_<task>`` for an array task), torchrun's ``--rdzv-id``; None for a process started by hand or by
    Lightning's own launcher (whose worker processes inherit their folder)."""
    if SLURMEnvironment.detect():
        array = os.environ.get("SLURM_ARRAY_JOB_ID")
        return f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ.get("SLURM_JOB_ID")
    if TorchElasticEnvironment.detect():
        run_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")
        if run_id == "none" and int(os.environ.get("WORLD_SIZE", 1)) > 1:
            raise RunError(
                "torchrun with several nodes needs --rdzv-id=<job id>: the same on every node, new for every job; "
                "it names the run folder all processes write into"
            )
        return run_id
    return None


def local_rank() -> int:
    """This process's rank on its machine before Lightning has set up: srun's ``SLURM_LOCALID`` under SLURM, else
    ``LOCAL_RANK`` (torchrun, Lightning's own launcher); 0 for a single process."""
    if SLURMEnvironment.detect():
        return int(os.environ.get("SLURM_LOCALID", 0))
    return int(os.environ.get("LOCAL_RANK", 0))


def job_run_dir(runs_dir: str | Path, experiment: str, seed: int | None, job: str) -> Path:
    """The run folder of a launcher's job: the same path on every node and again after a requeue."""
    return Path(runs_dir).resolve() / experiment / f"job{job}-seed{seed}"


def create_run_dir(runs_dir: str | Path, experiment: str, seed: int | None, run_dir: str | None = None) -> Path:
    """A new ``<runs_dir>/<experiment>/<timestamp>-seed<seed>`` folder, or the folder ``run_dir`` names (which must
    not exist yet); an existing one is never reused. Under torchrun or SLURM (``launch_id``) the folder is
    ``job<id>-seed<seed>``: global rank 0 creates it and the other ranks, on any node, wait for it to appear (the runs
    folder must be on a file system every node shares).

    DDP worker processes that Lightning started (LOCAL_RANK > 0) inherit the folder their launcher made.
    """
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited and os.environ.get("LOCAL_RANK", "0") != "0":
        return Path(inherited)
    job = launch_id() if run_dir is None else None
    if job is not None:
        run_dir = str(job_run_dir(runs_dir, experiment, seed, job))
        if rank_zero_only.rank != 0:
            return wait_for_folder(Path(run_dir))
    if run_dir is not None:
        path = Path(run_dir).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir()
        except FileExistsError:
            raise RunError(f"experiment.run_dir {path} exists; a run never reuses a folder") from None
        os.environ[RUN_DIR_ENV] = str(path)
        return path
    parent = Path(runs_dir).resolve() / experiment
    parent.mkdir(parents=True, exist_ok=True)
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-seed{seed}"
    for attempt in range(1000):
        path = parent / (stem if attempt == 0 else f"{stem}-{attempt}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        os.environ[RUN_DIR_ENV] = str(path)
        return path
    raise FileExistsError(f"Could not create a new run folder under {parent}")


def wait_for_folder(path: Path, timeout: float = 300.0) -> Path:
    """The run folder global rank 0 creates, once this rank (on another node, perhaps) can see it."""
    deadline = time.monotonic() + timeout
    while not path.is_dir():
        if time.monotonic() > deadline:
            raise RunError(
                f"rank {rank_zero_only.rank}: the run folder {path} did not appear within {timeout:.0f} s; "
                "experiment.runs_dir must be on a file system every node shares"
            )
        time.sleep(0.2)
    return path


TEMPORARY_PREFIX = "."


@contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[IO]:
    """A temporary file beside ``path``, flushed, synced and renamed over it on success: a kill leaves the old
    file or the new one, never half of one. A failed write (a full disk) removes its temporary file; the file
    gets the permissions of the user's umask, as an ordinary ``open`` would give it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f"{TEMPORARY_PREFIX}{path.name}."
    handle = tempfile.NamedTemporaryFile(mode, dir=path.parent, prefix=prefix, delete=False)  # noqa: SIM115
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)  # read it; there is no other way
        os.umask(umask)
        os.chmod(handle.name, 0o666 & ~umask)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def remove_temporary_files(folder: Path) -> None:
    """Leftovers of writes a kill interrupted (``.<name>.<random>`` beside their target); removed at a resume."""
    for path in folder.glob(f"{TEMPORARY_PREFIX}*"):
        if path.is_file():
            path.unlink()


def link_atomic(source: Path, target: Path) -> None:
    """``target`` becomes a hard link to ``source`` (a copy where the file system has no hard links), by rename."""
    temporary = target.with_name(f".{target.name}.link")
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
    except OSError:
        shutil.copyfile(source, temporary)
    os.replace(temporary, target)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    with atomic_file(path) as handle:
        json.dump(data, handle, indent=2, default=str)
        handle.write("\n")


def is_url(path: str | Path) -> bool:
    return "://" in str(path)


def load_checkpoint_file(path: str | Path, map_location: Any = "cpu", mmap: bool = False) -> dict[str, Any]:
    """A local checkpoint read with ``weights_only=True`` (tensors and plain data only: a checkpoint is a pickle,
    and any other object in it could run code). URLs are refused: download the file and pass its path."""
    if is_url(path):
        raise RunError(
            f"{path}: medlab reads checkpoints from local files only; download it, check where it came from, "
            "and pass its path"
        )
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        raise RunError(
            f"{path}: refused: the checkpoint holds objects other than tensors and plain data, which could run code "
            f"when loaded ({str(error).splitlines()[0][:160]})"
        ) from error
    except Exception as error:
        raise RunError(f"{path}: not a readable checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise RunError(f"{path}: not a Lightning checkpoint (no state_dict)")
    return checkpoint


def check_checkpoint_fits(path: str | Path, checkpoint: dict[str, Any], model: torch.nn.Module) -> None:
    """Refuse, before anything runs, a checkpoint (read from ``path``) whose weights do not fit ``model`` (another
    task or network)."""
    weights = checkpoint["state_dict"]
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
    mismatched = [k for k in expected if k in weights and tuple(weights[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or mismatched:
        detail = "; ".join(
            f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("other shape", mismatched))
            if keys
        )
        raise RunError(f"{path}: the checkpoint does not fit the configured {type(model).__name__} ({detail})")


class SafeCheckpointIO(TorchCheckpointIO):
    """Checkpoint files as medlab writes and reads them.

    Writes: ``torch.save`` into a temporary file beside the checkpoint, then rename over it: a kill leaves the old
    checkpoint or the new one, never half of one (Lightning's own transaction stages the file in /tmp, and moving it
    across file systems is a copy). With ``background`` the state is copied on the training thread and serialised
    on a writer thread while training goes on (a ResNet-18's 135 MB: the copy takes a tenth of the write); removals
    and links go through the same queue, so they happen in the order they were asked for, which Lightning's
    ``AsyncCheckpointIO`` does not promise (it queues the writes only: a checkpoint removed while it is still being
    written would come back). ``wait`` returns once everything asked for is on disk; Lightning's teardown waits too,
    so a fit ends with its checkpoints written. A failed write is raised at the next request. ``medlab`` writes in
    the background when a GPU trains (the CPU cores are free), in line on CPU, where the writer competes with the
    training threads for the cores and no gain was measured (docs/benchmarks.md section 13).
    Reads: ``load_checkpoint_file``, local files with ``weights_only=True`` only (Lightning reads http(s) paths with
    ``weights_only=False``).

    Args:
        background: write on a writer thread (False: on the training thread, before training goes on).
    """

    def __init__(self, background: bool = False) -> None:
        self.background = background
        self._writer: ThreadPoolExecutor | None = None
        self._error: BaseException | None = None

    def _do(self, action: Callable[..., None], *args: Any) -> None:
        if not self.background:
            action(*args)
            return
        self._raise_error()
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-writer")

        def run() -> None:
            try:
                action(*args)
            except BaseException as error:
                self._error = error

        self._writer.submit(run)

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if self.background:  # a point-in-time copy: training goes on changing the weights
            checkpoint = apply_to_collection(checkpoint, torch.Tensor, lambda tensor: tensor.detach().clone())
        self._do(write_checkpoint, checkpoint, Path(path))

    def remove_checkpoint(self, path: str | Path) -> None:
        self._do(super().remove_checkpoint, path)

    def link(self, source: Path, target: Path) -> None:
        """``target`` becomes ``source``'s file (``link_atomic``), once ``source`` is written."""
        self._do(link_atomic, source, target)

    def wait(self) -> None:
        if self._writer is not None:
            self._writer.submit(lambda: None).result()
        self._raise_error()

    def teardown(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        self._raise_error()

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        return load_checkpoint_file(path, map_location=map_location)


def write_checkpoint(checkpoint: dict[str, Any], path: Path) -> None:
    with atomic_file(path, "wb") as handle:
        torch.save(checkpoint, handle)


@dataclass
class Resume:
    """A fit that continues a checkpoint of an existing run folder, in that folder and the same W&B run."""

    run_dir: Path
    checkpoint: Path
    state: dict[str, Any]  # the checkpoint as read (memory-mapped), for the checks before the fit

    @property
    def global_step(self) -> int:
        """Optimizer steps the checkpoint holds: the metrics logged before it are kept."""
        return self.state["global_step"]

    @property
    def wandb_run_id(self) -> str | None:
        return self.state.get("medlab", {}).get("wandb_run_id")


def run_folder_of(checkpoint: str | Path) -> Path | None:
    """The run folder holding ``<run>/checkpoints/<checkpoint>`` beside its ``config.yaml``; None elsewhere."""
    if is_url(checkpoint):
        return None
    path = Path(checkpoint).resolve()
    if path.parent.name != "checkpoints" or not (path.parent.parent / "config.yaml").is_file():
        return None
    return path.parent.parent


def find_resume(ckpt_path: str | None, config_files: list[str], state: dict[str, Any] | None = None) -> Resume | None:
    """The run a ``ckpt_path`` continues: a checkpoint under ``<run>/checkpoints/``, or ``last`` with the run's own
    ``<run>/config.yaml`` among the config files. None for a checkpoint outside any run folder (a fine-tune).
    ``state``: the checkpoint ``ckpt_path`` names, when it has been read already."""
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        runs = [Path(c).parent for c in config_files if (Path(c).parent / "checkpoints" / "last.ckpt").is_file()]
        if not runs:
            return None
        checkpoint = runs[-1] / "checkpoints" / "last.ckpt"
        state = None  # "last" is resolved here, so only a named file can have been read before
    else:
        checkpoint = Path(ckpt_path)
    run_dir = run_folder_of(checkpoint)
    return None if run_dir is None else resume_from(run_dir, checkpoint, state)


def resume_from(run_dir: Path, checkpoint: Path, state: dict[str, Any] | None = None) -> Resume:
    return Resume(run_dir, checkpoint, load_checkpoint_file(checkpoint, mmap=True) if state is None else state)


REQUEUE_CHECKPOINT = "hpc_ckpt_{}.ckpt"  # Lightning's name for the checkpoint of a requeued SLURM job


def find_requeued(runs_dir: str, experiment: str, seed: int | None) -> Resume | None:
    """The run a requeued SLURM job continues (``SLURM_RESTART_COUNT`` > 0): its job folder, from the newest of the
    checkpoints it left (``hpc_ckpt_<n>.ckpt``, written when the requeue signal came, or ``last.ckpt``)."""
    if not SLURMEnvironment.detect() or int(os.environ.get("SLURM_RESTART_COUNT", 0)) == 0:
        return None
    run_dir = job_run_dir(runs_dir, experiment, seed, launch_id() or "")
    folder = run_dir / "checkpoints"
    saved = [*folder.glob(REQUEUE_CHECKPOINT.format("*")), *folder.glob("last.ckpt")] if folder.is_dir() else []
    if not saved:
        if run_dir.is_dir():
            raise RunError(
                f"{run_dir}: this requeued job left no checkpoint to continue from; move the folder aside to start "
                "the run again"
            )
        return None
    return resume_from(run_dir, max(saved, key=lambda path: path.stat().st_mtime))


def keep_metrics_before(run_dir: Path, step: int) -> tuple[list[str], list[dict[str, str]]]:
    """Before a resume: move ``metrics.csv`` aside (``metrics.interrupted.csv``, nothing is deleted) and return its
    header and the rows logged before optimizer step ``step`` (the checkpoint's), which the resumed run continues
    after."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return [], []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [row for row in reader if row.get("step") and int(float(row["step"])) < step]
        header = list(reader.fieldnames or [])
    backup = run_dir / "metrics.interrupted.csv"
    for attempt in range(1, 1000):
        if not backup.exists():
            break
        backup = run_dir / f"metrics.interrupted-{attempt}.csv"
    os.replace(path, backup)
    return header, rows
