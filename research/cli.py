"""``medlab``: LightningCLI (fit, validate, test, predict) plus ``medlab run`` = fit, test the best checkpoint,
and leave a complete run folder (config, checkpoints, metrics.csv, summary.json, figures/)."""

import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_only
from monai.utils import set_determinism

from datamodules.spec import DataSpec
from datamodules.validation import DatasetError, causes
from research.callbacks import (
    ClassPredictionWriter,
    LastCheckpoint,
    RunCheckpoint,
    RunState,
    SlurmRequeue,
    TestResultsWriter,
)
from research.runs import (
    Experiment,
    Resume,
    RunError,
    SafeCheckpointIO,
    check_checkpoint_fits,
    create_run_dir,
    fill_from_data,
    find_requeued,
    find_resume,
    is_url,
    load_checkpoint_file,
    local_rank,
    remove_temporary_files,
    run_folder_of,
    write_json_atomic,
)
from research.tables import print_table
from research.tracking import finish_wandb, log_checkpoint_artifact, make_loggers, run_metadata

RUN_DESCRIPTION = (
    "Fit, test the best checkpoint (by experiment.monitor), write summary.json and print the test metrics, all in a "
    "new run folder (or, with --ckpt_path=last and a run's config.yaml, in that run's folder)."
)
EXPORT_DESCRIPTION = (
    "Export a run's checkpoint to ONNX or torch.export, check it against PyTorch on the run's test inputs and write "
    "beside it what using it needs (class names, input, preprocessing): medlab export --config <run>/config.yaml "
    "--ckpt_path <run>/checkpoints/<file>.ckpt [--format onnx|pt2] [--output FILE]."
)
EXPLAIN_DESCRIPTION = (
    "Explain a classifier's predictions on its test split (or on data.prediction.paths): a map per item that is "
    "high where the input supports the predicted class, overlays and a panel in <run>/explanations/<method>/: "
    "medlab explain --config <run>/config.yaml --ckpt_path <run>/checkpoints/<file>.ckpt [--method "
    "gradcam|gradcampp|occlusion] [--layer NAME]."
)
TOOLS = {"export": EXPORT_DESCRIPTION, "explain": EXPLAIN_DESCRIPTION}
SPECIAL_CHECKPOINTS = ("best", "last", "hpc", "registry")  # Lightning's names, not files


class MedlabArgumentParser(LightningArgumentParser):
    """A parser that keeps the name it was made with: jsonargparse names a subcommand's parser ``medlab [options]
    fit``, but ``medlab run`` parses with the ``fit`` parser, and its usage and errors should say ``medlab run``.

    Args:
        fixed_prog: the name to show; None keeps jsonargparse's.
    """

    def __init__(self, *args: Any, fixed_prog: str | None = None, **kwargs: Any) -> None:
        self.fixed_prog = fixed_prog
        super().__init__(*args, **kwargs)

    @property
    def prog(self) -> str:
        return self.fixed_prog or self.__dict__["named"]

    @prog.setter
    def prog(self, value: str) -> None:
        self.__dict__["named"] = value


class MedlabCLI(LightningCLI):
    """LightningCLI whose ``fit`` writes into a fresh run folder with CSV + W&B logging and a best checkpoint."""

    def __init__(self, *args: Any, run_mode: bool = False, tool: str | None = None, **kwargs: Any) -> None:
        self.run_mode, self.tool = run_mode, tool  # tool: export or explain, a command without subcommands
        self.started = time.time()
        self.run_dir: Path | None = None
        self.initial_weights: str | None = None  # the checkpoint a fine-tune starts from
        self.checkpoint: dict[str, Any] | None = None  # the checkpoint file named on the command line, read once
        self.resume: Resume | None = None  # the run a fit continues
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_class_arguments(Experiment, "experiment")
        if self.tool:  # one parser, no subcommands: what `medlab export|explain` adds to a run's config
            parser.add_argument("--ckpt_path", type=str, required=True, help=f"the checkpoint to {self.tool}")
            parser.add_argument("--weights_only", type=bool | None, default=None, help="(a fit setting; unused)")
        if self.tool == "export":
            parser.add_argument("--format", type=Literal["onnx", "pt2"], default="onnx",
                                help="onnx (torch.onnx, dynamo exporter) or pt2 (torch.export)")  # fmt: skip
            parser.add_argument("--output", type=str | None, default=None,
                                help="the file to write (default: <run>/export/model.<format>)")  # fmt: skip
            parser.add_argument("--tolerance", type=float, default=1e-4,
                                help="largest difference from PyTorch allowed on the test inputs")  # fmt: skip
        if self.tool == "explain":
            parser.add_argument("--method", type=Literal["gradcam", "gradcampp", "occlusion"], default="gradcam",
                                help="Grad-CAM, Grad-CAM++ (monai.visualize) or occlusion sensitivity")  # fmt: skip
            parser.add_argument("--layer", type=str | None, default=None,
                                help="Grad-CAM's layer by module name (default: per network family)")  # fmt: skip
            parser.add_argument("--mask_size", type=int | None, default=None,
                                help="occlusion window in pixels or samples (default: side / 6)")  # fmt: skip
            parser.add_argument("--limit", type=int | None, default=None, help="explain only the first N items")
            parser.add_argument("--output", type=str | None, default=None,
                                help="the folder to write into (default: <run>/explanations)")  # fmt: skip
        # The contract from data to task: the DataModule's spec decides the network's head and the loss, and the
        # experiment's monitor the best-so-far metric, so an experiment file never repeats either.
        parser.link_arguments("data", "model.init_args.data", compute_fn=spec_of, apply_on="instantiate")
        parser.link_arguments("experiment.monitor", "model.init_args.monitor")
        parser.link_arguments("experiment.mode", "model.init_args.mode")

    def of_command(self, config: Any) -> Any:
        """The part of a parsed or instantiated config that belongs to the command that runs (``medlab export``
        parses one without subcommands)."""
        return config[self.subcommand] if self.subcommand else config

    @property
    def command_config(self) -> Any:
        return self.of_command(self.config)

    def before_instantiate_classes(self) -> None:
        """MONAI's seeding on top of Lightning's (``seed_everything`` has seeded torch, numpy and random), the
        experiment's name filled from the data settings (so the saved config names its own runs), and a resume's
        checkpoint resolved, so that ``fit`` continues from it in the run's own folder.

        ``trainer.deterministic`` stays the one switch for deterministic kernels, so cuDNN's flag is kept as it was.
        """
        config = self.command_config
        seed = config.get("seed_everything")
        if isinstance(seed, int) and not isinstance(seed, bool):
            cudnn_deterministic = torch.backends.cudnn.deterministic
            set_determinism(seed)
            torch.backends.cudnn.deterministic = cudnn_deterministic
        fill_from_data(config.experiment, config.get("data.init_args"))
        if self.subcommand == "fit":
            configs = [str(path) for path in config.get("config") or []]
            self.resume = find_resume(config.ckpt_path, configs, self.checkpoint)
            if config.ckpt_path is None:  # a requeued SLURM job continues its own run
                self.resume = find_requeued(config.experiment.runs_dir, config.experiment.name, seed)
            if self.resume:
                config.ckpt_path = str(self.resume.checkpoint)
                self.checkpoint = self.resume.state  # read once, checked in check_inputs
                self.save_config_callback = None  # its config.yaml is already there

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then refuse a checkpoint file that cannot be read safely before Lightning reads its hyperparameters
        (which it does right after parsing)."""
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        ckpt_path = (self.config[subcommand] if subcommand else self.config).get("ckpt_path")
        if ckpt_path is not None and (is_url(ckpt_path) or ckpt_path not in SPECIAL_CHECKPOINTS):
            self.checkpoint = load_checkpoint_file(ckpt_path, mmap=True)
            if subcommand == "fit" and run_folder_of(ckpt_path) is None:
                # A fine-tune: this config's model and optimizer start from the checkpoint's weights. Hidden from
                # Lightning, which would restore the whole training state and the checkpoint's hyperparameters.
                self.initial_weights = ckpt_path
                self.config[subcommand].ckpt_path = None

    def instantiate_classes(self) -> None:
        """A setting a class refuses (``data.flag``, ``data.fold``...) is said in one line, naming the group."""
        try:
            super().instantiate_classes()
        except (ValueError, *INPUT_ERRORS) as error:
            # jsonargparse wraps the error a link's compute_fn raised: say that one
            said = [cause for cause in causes(error) if isinstance(cause, INPUT_ERRORS)]
            if said:
                raise said[-1] from said[-1].__cause__
            raise RunError(setting_error(error)) from error

    def check_inputs(self) -> None:
        """Read and check the data of every split the command will use, and the checkpoint it loads, before any run
        folder, W&B run or output file exists: bad input stops the command with nothing written."""
        ckpt_path = self.command_config.get("ckpt_path") or self.initial_weights
        if ckpt_path is not None and ckpt_path not in SPECIAL_CHECKPOINTS:  # a resume's "last" is resolved by now
            check_checkpoint_fits(ckpt_path, self.checkpoint or load_checkpoint_file(ckpt_path, mmap=True), self.model)
        if local_rank() == 0:
            self.datamodule.prepare_data()  # downloads, when asked for: once per machine
        self.datamodule.setup(self.subcommand or self.explained_split)  # export checks the model on test inputs
        if self.run_mode and self.datamodule.split_size("test") == 0:
            raise RunError(
                f"{type(self.datamodule).__name__} has no test cases, so `medlab run` cannot test the best checkpoint "
                "(segmentation: name them in data.split.test_cases; or train without testing with `medlab fit`)"
            )

    @property
    def explained_split(self) -> str:
        """What ``medlab export`` and ``explain`` read: the files of ``data.prediction.paths``, else the test split."""
        prediction = getattr(self.datamodule, "prediction", None)
        return "predict" if self.tool == "explain" and prediction is not None and prediction.paths else "test"

    def trains_on_gpu(self) -> bool:
        """Whether the trainer will train on a GPU (``accelerator`` gpu/cuda, or auto with one visible)."""
        accelerator = str(self.trainer_settings().get("accelerator", "auto"))
        return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())

    def trainer_settings(self) -> Any:
        """The ``trainer`` group of the command's instantiated config."""
        return self.of_command(self.config_init).get("trainer") or {}

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        # checkpoints written on a writer thread where a GPU trains (the CPU cores are free), on CPU in line
        kwargs["plugins"] = self.trainer_settings().get("plugins") or [SafeCheckpointIO(self.trains_on_gpu())]
        self.check_inputs()
        if self.subcommand != "fit":
            kwargs.setdefault("logger", False)  # metrics are printed, predictions are files: no ./lightning_logs
            # into the checkpoint's own run folder (``<run>/predictions``) rather than wherever the command ran
            folder = run_folder_of(self.command_config.get("ckpt_path") or "")
            if folder is not None:
                kwargs.setdefault("default_root_dir", str(folder))
            writer = self.prediction_writer() if self.subcommand == "predict" else None
            if self.subcommand == "test" and folder is not None:  # into the run's folder, never where it is run
                writer = self.test_results_writer()
            if writer is not None:
                kwargs["callbacks"] = [*(self.trainer_settings().get("callbacks") or []), writer]
            return super().instantiate_trainer(**kwargs)
        config = self.config["fit"]
        if self.initial_weights:  # checked to fit above
            self.model.load_state_dict(self.checkpoint["state_dict"])
            config.ckpt_path = self.initial_weights  # in the saved config.yaml, so the run repeats as it was
        experiment: Experiment = config.experiment
        seed = config.seed_everything
        if self.resume:  # continue in the run's own folder
            self.run_dir = self.resume.run_dir
            if rank_zero_only.rank == 0:
                remove_temporary_files(self.run_dir / "checkpoints")
                remove_temporary_files(self.run_dir)
        else:
            self.run_dir = create_run_dir(experiment.runs_dir, experiment.name, seed, experiment.run_dir)
        if rank_zero_only.rank == 0:
            for name, content in self.datamodule.run_files.items():
                write_json_atomic(self.run_dir / name, content)
        resolved = yaml.safe_load(self.parser.dump(self.config, skip_none=False))["fit"]
        self.metadata = run_metadata()  # the commit, versions and machine the run started from
        kwargs["default_root_dir"] = str(self.run_dir)
        kwargs["logger"] = make_loggers(
            self.run_dir,
            run_name=f"{experiment.name}/{self.run_dir.name}",
            project=experiment.project,
            group=experiment.name,
            tags=[*experiment.tags, f"seed={seed}", f"data={type(self.datamodule).__name__}"],
            config={**resolved, "medlab": self.metadata},
            resume=self.resume,
        )
        callbacks = list(self.trainer_settings().get("callbacks") or [])
        self.run_state = RunState(self.started, self.run_dir)
        callbacks += [self.run_state, self.test_results_writer()]
        if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
            best = RunCheckpoint(
                dirpath=self.run_dir / "checkpoints",
                filename="best-epoch{epoch:03d}",
                auto_insert_metric_name=False,
                monitor=experiment.monitor,
                mode=experiment.mode,
            )
            callbacks += [best, LastCheckpoint(best, dirpath=self.run_dir / "checkpoints")]
        callbacks.append(SlurmRequeue(self.run_dir / "checkpoints"))
        kwargs["callbacks"] = callbacks
        return super().instantiate_trainer(**kwargs)

    def prediction_writer(self) -> Any:
        """The DataModule's own writer (segmentation masks), else ``predictions.csv`` with its items' names."""
        data, spec = self.datamodule, self.model.data
        writer = data.prediction_writer()
        if writer is not None:
            return writer
        items = data.predicted_inputs or [{"item": name} for name in data.item_names.get(data.predict_split, [])]
        prediction = getattr(data, "prediction", None)
        return ClassPredictionWriter(None if spec.task == "regression" else spec.class_names, items or None,
                                     data.unreadable, prediction.output_dir if prediction else None)  # fmt: skip

    def test_results_writer(self) -> TestResultsWriter:
        """``test_predictions.csv``, its rows named by the DataModule's names for its test items."""
        return TestResultsWriter(self.datamodule.item_names.get("test"))

    def after_fit(self) -> None:
        if self.run_mode:
            self.test_best_and_summarise()

    def test_best_and_summarise(self) -> None:
        """Test the best checkpoint, then write ``summary.json`` and print the test metrics. A model with nothing to
        learn by gradient (``ClassicalRegistration``, ``FeatureClassifier``: no parameters, so no checkpoint is
        written) is tested as it is."""
        trainer = self.trainer
        learned = any(True for _ in self.model.parameters())
        checkpoint = trainer.checkpoint_callback
        final_score = trainer.callback_metrics.get(checkpoint.monitor or "")  # the last validation's, before testing
        results = trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best" if learned else None,
                               verbose=False)  # fmt: skip
        if not results:
            raise ValueError("The DataModule has no test split, so `medlab run` cannot test the best checkpoint")
        results = results[0]
        if not trainer.is_global_zero:
            return
        best_path = Path(checkpoint.best_model_path) if learned else None
        best_epoch = load_checkpoint_file(best_path, mmap=True)["epoch"] if learned else trainer.current_epoch - 1
        best_score = checkpoint.best_model_score if learned else final_score
        experiment: Experiment = self.config["fit"].experiment
        summary = {
            "experiment": experiment.name,
            "run_id": self.run_dir.name,
            "seed": self.config["fit"].seed_everything,
            "test": {k: float(v) for k, v in results.items()},
            "monitor": checkpoint.monitor,
            "best_score": None if best_score is None else float(best_score),
            "best_epoch": best_epoch,
            "best_checkpoint": best_path and os.path.relpath(best_path, self.run_dir),
            "epochs_trained": trainer.current_epoch,
            "initial_weights": self.initial_weights and str(Path(self.initial_weights).resolve()),
            "wall_time_s": round(self.run_state.wall_time(), 1),
            "test_time_s": round(self.run_state.test_time, 2),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            **self.metadata,
        }
        write_json_atomic(self.run_dir / "summary.json", summary)
        if experiment.log_model and best_path:
            metadata = {k: summary[k] for k in ("monitor", "best_score", "best_epoch", "seed", "run_id")}
            log_checkpoint_artifact(trainer.loggers, best_path, metadata)
        finish_wandb()  # before the table, so that the table is the last thing the run prints
        chosen = f"best {checkpoint.monitor}" if checkpoint.monitor else "last epoch, no validation"
        print_table(
            f"{experiment.name}: test metrics ({chosen} at epoch {best_epoch})",
            ["metric", "value"],
            [[name, f"{value:.4f}"] for name, value in sorted(summary["test"].items())],
            footer=f"run folder: {self.run_dir}  ({summary['wall_time_s']:.0f} s)",
        )


def spec_of(data: LightningDataModule) -> dict[str, Any]:
    """The DataModule's ``spec`` as plain data; a spec it cannot make (a field forgotten) is said in one line."""
    try:
        spec: DataSpec = data.spec
    except DatasetError:
        raise
    except (TypeError, ValueError, AttributeError) as error:
        raise RunError(f"data ({type(data).__name__}).spec: {error}") from error
    return spec.as_dict()


def setting_error(error: ValueError) -> str:
    """jsonargparse reports a constructor's error inside ``Does not validate against any of the Union subtypes ...
    Errors: - <the error> - Expected a NoneType ... Given value: Namespace(class_path=...)``: keep the error and the
    class it came from."""
    text = str(error)
    reasons = [line.strip()[2:] for line in text.splitlines() if line.strip().startswith("- ")]
    reasons = [r for r in reasons if not r.startswith("Expected a <class 'NoneType'>")] or [text.splitlines()[0]]
    class_path = re.search(r"class_path='([\w.]+)'", text)
    if class_path is None:
        return reasons[0]
    group = {"datamodules": "data", "research": "model"}.get(class_path.group(1).split(".")[0], "config")
    return f"{group} ({class_path.group(1)}): {reasons[0]}"


def cli(args: list[str] | None = None) -> MedlabCLI:
    """Parse ``args`` (default: the command line) and run; ``run ...`` takes the same arguments as ``fit ...``;
    ``export ...`` and ``explain ...`` parse a run's config and checkpoint and build its model and data, without a
    subcommand."""
    args = sys.argv[1:] if args is None else list(args)
    run_mode = bool(args) and args[0] == "run"
    if run_mode:
        args = ["fit", *args[1:]]
    fitting = bool(args) and args[0] == "fit"
    # sys.argv stays as typed (DDP re-launches it), so LightningCLI sees both; that is intended here.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    if args and args[0] in TOOLS:
        return MedlabCLI(
            LightningModule, LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
            seed_everything_default=42, auto_configure_optimizers=False, save_config_callback=None,
            parser_kwargs={"allow_abbrev": False, "fixed_prog": f"medlab {args[0]}", "description": TOOLS[args[0]]},
            parser_class=MedlabArgumentParser, args=args[1:], run=False, tool=args[0],
        )  # fmt: skip
    return MedlabCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=42,
        auto_configure_optimizers=False,
        # The resolved config belongs in the run folder; validate/test/predict make none and leave cwd alone.
        save_config_callback=SaveConfigCallback if fitting else None,
        # A misspelt key is an error, never silently expanded to the option it abbreviates.
        parser_kwargs={"allow_abbrev": False, **{sub: {"allow_abbrev": False} for sub in LightningCLI.subcommands()}}
        | (
            {"fit": {"allow_abbrev": False, "fixed_prog": "medlab run", "description": RUN_DESCRIPTION}}
            if run_mode
            else {}
        ),
        parser_class=MedlabArgumentParser,
        args=args,
        run_mode=run_mode,
    )


DEBUG_ENV = "MEDLAB_DEBUG"
INPUT_ERRORS = (DatasetError, FileNotFoundError, RunError)
"""What bad input raises: said in one line (file, problem, what was expected), with exit code 1."""


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``medlab`` command; the W&B run is always closed, also when the run fails.

    Bad input ends the command with a one-line message and exit code 1; ``MEDLAB_DEBUG=1`` shows the traceback.
    ``medlab compare``, ``medlab sweep`` and ``medlab deid`` are their own commands (``research.compare``,
    ``research.sweep``, ``research.deid``).
    """
    args = sys.argv[1:] if args is None else list(args)
    command, rest = (args[0], args[1:]) if args else ("", [])
    if command in ("compare", "sweep", "deid"):
        from research import compare, deid, sweep

        return {"compare": compare.main, "sweep": sweep.main, "deid": deid.main}[command](rest)
    exit_code = 1
    try:
        medlab = cli(args)
        if command == "export":
            from research.export import export_run

            export_run(medlab)
        if command == "explain":
            from research.explain import explain_run

            explain_run(medlab)
        if command == "predict" and medlab.datamodule.unreadable:
            print(f"medlab: error: {len(medlab.datamodule.unreadable)} inputs could not be read: "
                  f"{', '.join(medlab.datamodule.unreadable)}", file=sys.stderr)  # fmt: skip
            sys.exit(1)
        exit_code = 0
    except INPUT_ERRORS as error:
        if os.environ.get(DEBUG_ENV):
            raise
        message = str(error.args[0]) if isinstance(error, FileNotFoundError) and error.args else str(error)
        print(f"medlab: error: {message}\n(set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        sys.exit(1)
    finally:
        finish_wandb(exit_code)


if __name__ == "__main__":
    main()
