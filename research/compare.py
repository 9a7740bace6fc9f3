"""``medlab compare RUNS...``: runs side by side from their run folders alone (no W&B needed).

A table of runs (experiment, seed, the config values that differ between them, test metrics, best epoch, wall
time), the mean ± std over seeds (and the ``--over`` keys: folds) of each group of runs that differ only in them,
best validation score beside the test metrics, and the learning curves of every run overlaid; written as
``compare.md``, ``compare.html`` and ``curves.png``.
"""

import argparse
import csv
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, stdev
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import yaml  # noqa: E402
from rich.console import Console  # noqa: E402

from research.tables import html_table, markdown_table, print_table  # noqa: E402

# Config keys that never make two runs different experiments.
IGNORED = ("seed_everything", "experiment.runs_dir", "experiment.run_dir", "experiment.tags",
           "trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.callbacks", "ckpt_path",
           "config")  # fmt: skip


@dataclass
class Run:
    path: Path
    summary: dict[str, Any]
    config: dict[str, Any]  # flattened: "model.init_args.optimizer.init_args.lr" -> 0.003
    curves: list[dict[str, str]]

    @property
    def name(self) -> str:
        return f"{self.summary['experiment']}/{self.path.name}"


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat |= flatten(value, f"{prefix}{key}.")
        return flat
    return {prefix[:-1]: tree}


def find_runs(paths: list[str | Path]) -> list[Run]:
    """Every finished run (a folder with ``summary.json``) at or below ``paths``, oldest first."""
    folders: set[Path] = set()
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such run folder")
        folders |= {p.parent.resolve() for p in ([path / "summary.json"] if (path / "summary.json").is_file()
                                                 else path.rglob("summary.json"))}  # fmt: skip
    runs = []
    for folder in sorted(folders, key=lambda p: (p.parent.name, p.name)):
        summary = json.loads((folder / "summary.json").read_text())
        config_file = folder / "config.yaml"
        config = flatten(yaml.safe_load(config_file.read_text())) if config_file.is_file() else {}
        metrics = folder / "metrics.csv"
        curves = list(csv.DictReader(metrics.open(newline=""))) if metrics.is_file() else []
        runs.append(Run(folder, summary, config, curves))
    return runs


def short(key: str) -> str:
    """``model.init_args.optimizer.init_args.lr`` -> ``optimizer.lr``: the key without class plumbing."""
    parts = [p for p in key.split(".") if p not in ("init_args", "class_path")]
    return ".".join(parts[-2:])


def differences(runs: list[Run]) -> dict[str, Any]:
    """Per run, the config keys whose values differ between the runs of its experiment (the seed apart), ``{run:
    {key: value}}``: what a grid varied. Runs of different experiments are told apart by the experiment's name."""
    experiments: dict[str, list[Run]] = {}
    for run in runs:
        experiments.setdefault(run.summary["experiment"], []).append(run)
    found = {}
    for members in experiments.values():
        keys = sorted({k for run in members for k in run.config if not k.startswith(IGNORED)})
        varying = [k for k in keys if len({json.dumps(run.config.get(k), default=str) for run in members}) > 1]
        found.update({run.name: {short(k): run.config.get(k) for k in varying} for run in members})
    return found


def headline_metrics(runs: list[Run], chosen: list[str] | None) -> list[str]:
    """The test metrics every run has, without per-class ones (``test/f1_N``), unless chosen."""
    if chosen:
        return chosen
    common = set.intersection(*(set(run.summary.get("test", {})) for run in runs)) if runs else set()
    return sorted(m for m in common if "_" not in m.split("/", 1)[1])


def mean_std(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4f}" if values else ""
    return f"{mean(values):.4f} ± {stdev(values):.4f}"


def tables(
    runs: list[Run], metrics: list[str], over: list[str] | None = None
) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    """Rows of the run table and of the group table (runs equal but for the seed and the ``over`` keys, e.g. the
    folds of a cross-validation), the group's mean ± std of its best validation scores beside the test metrics."""
    diffs = differences(runs)
    run_header = ["experiment", "run", "seed", "differences", *metrics, "best epoch", "wall (s)"]
    run_rows, groups = [], {}
    for run in runs:
        diff = ", ".join(f"{k}={v}" for k, v in diffs[run.name].items())
        test = run.summary.get("test", {})
        scores = [f"{test[m]:.4f}" if m in test else "" for m in metrics]
        wall = f"{run.summary.get('wall_time_s', math.nan):.0f}"
        seed, best = str(run.summary.get("seed")), str(run.summary.get("best_epoch"))
        run_rows.append([run.summary["experiment"], run.path.name, seed, diff, *scores, best, wall])
        shared = ", ".join(f"{k}={v}" for k, v in diffs[run.name].items() if k not in (over or []))
        groups.setdefault((run.summary["experiment"], shared), []).append(run)
    group_header = ["experiment", "differences", "runs", "seeds", "best val score", *metrics, "wall (s)"]
    group_rows = []
    for (experiment, diff), members in groups.items():
        seeds = ", ".join(sorted({str(r.summary.get("seed")) for r in members}))
        best = mean_std([r.summary["best_score"] for r in members if r.summary.get("best_score") is not None])
        values = [mean_std([r.summary["test"][m] for r in members if m in r.summary.get("test", {})]) for m in metrics]
        walls = [r.summary.get("wall_time_s", math.nan) for r in members]
        group_rows.append([experiment, diff, str(len(members)), seeds, best, *values, f"{mean(walls):.0f}"])
    return run_header, run_rows, group_header, group_rows


def plot_curves(runs: list[Run], metrics: list[str], path: Path) -> None:
    """One panel per metric (epoch-level values from metrics.csv), every run overlaid."""
    diffs = differences(runs)
    groups = list(dict.fromkeys((r.summary["experiment"], str(diffs[r.name])) for r in runs))
    styles = ["-", "--", ":", "-."]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.8), squeeze=False)
    for axis, metric in zip(axes[0], metrics, strict=True):
        seen: dict[tuple[str, str], int] = {}
        for run in runs:
            points = [(int(r["epoch"]), float(r[metric])) for r in run.curves if r.get(metric) and r.get("epoch")]
            if not points:
                continue
            group = (run.summary["experiment"], str(diffs[run.name]))  # one colour per group, a dash per seed
            seen[group] = seen.get(group, -1) + 1
            label = " ".join([run.summary["experiment"], *(f"{k}={v}" for k, v in diffs[run.name].items()),
                              f"seed {run.summary.get('seed')}"])  # fmt: skip
            axis.plot(*zip(*points, strict=True), marker=".", color=f"C{groups.index(group) % 10}",
                      linestyle=styles[seen[group] % len(styles)], label=label)  # fmt: skip
        axis.set(title=metric, xlabel="epoch")
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def item_score(row: dict[str, str]) -> tuple[str, float]:
    """How well one test item went, higher is better, from its row of ``test_predictions.csv``: the probability given
    to the true class (to each true label), the mean Dice of the classes after the first (as ``test/dice``), or
    minus the mean absolute error of a regression."""
    columns = lambda prefix: [k for k in row if k.startswith(prefix)]  # noqa: E731
    if "true" in row and f"p_{row['true']}" in row:
        return "p(true class)", float(row[f"p_{row['true']}"])
    if columns("dice_"):
        scores = [float(row[k]) for k in columns("dice_")[1:]]
        scores = [s for s in scores if not math.isnan(s)]
        return "mean Dice", mean(scores) if scores else math.nan
    if columns("true_") and columns("p_"):
        found = [float(row[f"p_{k[5:]}"]) if row[k] == "1" else 1 - float(row[f"p_{k[5:]}"]) for k in columns("true_")]
        return "mean p(true label)", mean(found)
    errors = [abs(float(row[k]) - float(row[f"predicted_{k[5:]}"])) for k in columns("true_")]
    return "-MAE", -mean(errors)


def worst_items(run: Run, count: int) -> tuple[list[str], list[list[str]]]:
    """The ``count`` test items of a run that went worst (see ``item_score``), worst first."""
    path = run.path / "test_predictions.csv"
    if not path.is_file():
        return [], []
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    scored = sorted(((item_score(row), row) for row in rows), key=lambda pair: pair[0][1])[:count]
    if not scored:
        return [], []
    shown = [k for k in rows[0] if k in ("true", "predicted") or k.startswith(("dice_", "hd95_"))]
    header = ["item", scored[0][0][0], *shown]
    return header, [[row["item"], f"{score:.4f}", *(row[k] for k in shown)] for (_, score), row in scored]


def curve_metrics(runs: list[Run], monitor: str | None) -> list[str]:
    monitors = [monitor] if monitor else sorted({r.summary.get("monitor") for r in runs if r.summary.get("monitor")})
    return ["train/loss_epoch", "val/loss", *monitors]


def compare(
    paths: list[str | Path],
    output: str | Path | None = None,
    metrics: list[str] | None = None,
    curve: str | None = None,
    console: Console | None = None,
    worst: int = 0,
    over: list[str] | None = None,
) -> Path:
    """Write ``compare.md``, ``compare.html`` and ``curves.png`` for the runs under ``paths``, with each run's
    ``worst`` worst test items when asked, the groups averaging over the seeds and the ``over`` config keys (short
    names, ``folds.fold``); return the folder."""
    runs = find_runs(paths)
    if not runs:
        raise FileNotFoundError(f"no finished runs (folders with summary.json) under {', '.join(map(str, paths))}")
    console = console or Console(width=None if Console().is_terminal else 200)
    chosen = headline_metrics(runs, metrics)
    run_header, run_rows, group_header, group_rows = tables(runs, chosen, over)
    averaged = " and ".join(["seeds", *(over or [])])
    folder = Path(output) if output else Path("runs") / "comparisons" / time.strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    plot_curves(runs, curve_metrics(runs, curve), folder / "curves.png")
    worst_tables = [(f"{run.name}: the {worst} worst test items", *worst_items(run, worst)) for run in runs if worst]
    worst_tables = [table for table in worst_tables if table[1]]
    (folder / "compare.md").write_text(
        f"# {len(runs)} runs\n\n{markdown_table(run_header, run_rows)}\n\n"
        f"## Mean ± std over {averaged} (runs equal but for them)\n\n{markdown_table(group_header, group_rows)}\n\n"
        + "".join(f"## {title}\n\n{markdown_table(header, rows)}\n\n" for title, header, rows in worst_tables)
        + "![learning curves](curves.png)\n"
    )
    (folder / "compare.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>medlab runs</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:2px 6px}"
        "table{border-collapse:collapse;margin-bottom:1em}</style>"
        f"<h1>{len(runs)} runs</h1>{html_table(run_header, run_rows)}"
        f"<h2>Mean ± std over {averaged}</h2>{html_table(group_header, group_rows)}<img src='curves.png'>"
    )
    print_table(f"{len(runs)} runs", run_header, run_rows, console)
    print_table(f"mean ± std over {averaged} (runs equal but for them)", group_header, group_rows, console)
    for title, header, rows in worst_tables:
        print_table(title, header, rows, console)
    console.print(f"written: {folder}/compare.md, compare.html, curves.png", soft_wrap=True)
    return folder


def main(args: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="medlab compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", help="run folders, or folders holding run folders (e.g. runs/quickstart)")
    parser.add_argument("--output", help="where to write the report (default runs/comparisons/<time>)")
    parser.add_argument("--metrics", nargs="+", help="test metrics to show (default: the headline ones all share)")
    parser.add_argument("--curve", help="validation metric to plot (default: each run's monitor)")
    parser.add_argument("--worst", type=int, default=0, metavar="N",
                        help="also list each run's N worst test items (from its test_predictions.csv)")  # fmt: skip
    parser.add_argument("--over", nargs="+", metavar="KEY",
                        help="config keys (short names, e.g. folds.fold) to average over as over seeds: the folds "
                             "of a cross-validation")  # fmt: skip
    options = parser.parse_args(args)
    compare(options.runs, options.output, options.metrics, options.curve, worst=options.worst, over=options.over)
