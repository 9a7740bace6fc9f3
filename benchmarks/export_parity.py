"""Export parity and time: each network family trained briefly (the weights need not be good to be compared),
then ``medlab export`` to ONNX and to torch.export, each as its own process; the maximum absolute difference from
PyTorch on the run's test inputs and the seconds each export took (start-up included).

``--segmentation-run <run>``: that segmentation run's best checkpoint exported to ONNX and tested by medlab's own
segmentation test with onnxruntime in place of the network (MONAI's sliding windows with the run's settings), and
in sliding windows written in numpy (``numpy_sliding_window``: no torch or MONAI at inference); its Dice per class
beside what ``medlab run`` measured with PyTorch (``summary.json``)."""

import argparse
import functools
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch
from lightning.pytorch import Trainer

from benchmarks.common import print_rows, write_results
from research.cli import cli
from research.export import export_run
from research.sweep import run_process

REPO = Path(__file__).resolve().parents[1]
SHORT = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
         "--trainer.num_sanity_val_steps=0"]  # fmt: skip
CASES = {
    "LeNet (quickstart)": ("quickstart", []),
    "ResNet-18 (28) (BreastMNIST)": ("medmnist/resnet18", []),
    "DenseNet121 (quickstart, 32 px)": ("quickstart", ["--model.net=research.models.DenseNet121"]),
    "UNet 2D (ISBI 2012)": ("segmentation/isbi2012_unet", []),
    "UNet 3D (synthetic3d)": ("segmentation/synthetic3d_unet", ["--data.num_images=8"]),
    "RecurrentNet (MIT-BIH)": ("ecg/mitbih_lstm", []),
}


class OnnxNet(torch.nn.Module):
    """An exported ONNX model, run by onnxruntime, where a task expects its network."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {"input": x.detach().numpy()})[0])


def onnx_sliding_window_dice(run_dir: Path) -> dict[str, dict[str, float]]:
    """Dice per class of the run's best checkpoint exported to ONNX, tested by medlab's own ``Segmenter`` test with
    onnxruntime in place of the network (MONAI's ``SlidingWindowInferer``: the run's roi, overlap and gaussian
    blending), and the run's own ``test/dice_<class>`` measured with PyTorch."""
    summary = json.loads((run_dir / "summary.json").read_text())
    scratch = Path(tempfile.mkdtemp())
    checkpoint = run_dir / summary["best_checkpoint"]
    medlab = cli(["export", f"--config={run_dir / 'config.yaml'}", f"--ckpt_path={checkpoint}",
                  f"--output={scratch / 'model.onnx'}"])  # fmt: skip
    export_run(medlab)
    in_numpy = numpy_dice(medlab, scratch / "model.onnx")
    model = medlab.model
    model.net = OnnxNet(scratch / "model.onnx")
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=scratch)
    (tested,) = trainer.test(model, datamodule=medlab.datamodule, verbose=False)
    return {name: {"onnx": tested[f"test/dice_{name}"], "numpy": float(np.mean(in_numpy[name])),
                   "pytorch": summary["test"][f"test/dice_{name}"]} for name in model.class_names}  # fmt: skip


def numpy_sliding_window(session: Any, image: np.ndarray, roi: list[int], overlap: float) -> np.ndarray:
    """Logits (classes, *spatial) of one image (channels, *spatial) from an ONNX model run by onnxruntime in
    overlapping windows blended by a gaussian (sigma: roi / 8, at least 1e-3), numpy only (``docs/export.md``). The
    windows start every ``roi * (1 - overlap)`` voxels, the last one flush with the edge, as MONAI places them."""
    spatial = image.shape[1:]
    starts = []
    for size, window in zip(spatial, roi, strict=True):
        step = max(1, int(window * (1 - overlap)))
        count = int(np.ceil(max(size - window, 0) / step)) + 1
        starts.append(sorted({min(i * step, max(size - window, 0)) for i in range(count)}))
    axes = [np.exp(-((np.arange(w) - (w - 1) / 2) ** 2) / (2 * (w / 8) ** 2)) for w in roi]
    weight = functools.reduce(np.multiply, np.ix_(*axes))  # the outer product of the axes' gaussians
    weight = np.maximum(weight, max(weight.min(), 1e-3))  # the edges still count a little
    logits, total = None, np.zeros(spatial)
    for corner in itertools.product(*starts):
        where = tuple(slice(c, c + w) for c, w in zip(corner, roi, strict=True))
        out = session.run(None, {"input": image[(slice(None), *where)][None].astype(np.float32)})[0][0]
        logits = np.zeros((out.shape[0], *spatial)) if logits is None else logits
        logits[(slice(None), *where)] += out * weight
        total[where] += weight
    return logits / total


def numpy_dice(medlab: Any, path: Path) -> dict[str, list[float]]:
    """Dice per class and test image of the ONNX file at ``path`` in ``numpy_sliding_window`` (the run's roi and
    overlap), on the run's preprocessed test images."""
    model, session = medlab.model, onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    roi, dice = model.roi_size, {name: [] for name in model.class_names}
    for batch in medlab.datamodule.test_dataloader():
        image = np.asarray(batch["image"][0], dtype=np.float32)
        label = np.asarray(batch["label"][0, 0])
        predicted = numpy_sliding_window(session, image, roi or list(image.shape[1:]), model.overlap).argmax(0)
        for index, name in enumerate(model.class_names):
            truth, found = label == index, predicted == index
            dice[name].append(2 * (truth & found).sum() / (truth.sum() + found.sum()))
    return dice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", help="case names to run (default: all)")
    parser.add_argument("--formats", nargs="+", default=["onnx", "pt2"], choices=["onnx", "pt2"])
    parser.add_argument("--segmentation-run", type=Path, help="a segmentation run folder to check in sliding windows")
    options = parser.parse_args()
    if options.segmentation_run:
        dice = onnx_sliding_window_dice(options.segmentation_run)
        rows = [[name, f"{d['onnx']:.6f}", f"{d['numpy']:.6f}", f"{d['pytorch']:.6f}",
                 f"{max(abs(d['onnx'] - d['pytorch']), abs(d['numpy'] - d['pytorch'])):.1e}"]
                for name, d in dice.items()]  # fmt: skip
        print_rows(f"Test Dice of {options.segmentation_run}: ONNX in sliding windows vs medlab run (PyTorch)",
                   ["class", "ONNX in MONAI's windows", "ONNX in numpy windows", "PyTorch (summary.json)",
                    "largest |difference|"], rows)  # fmt: skip
        write_results("export_sliding_window_dice", [{"run": str(options.segmentation_run), "dice": dice}])
        return
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    results, rows = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for name, (experiment, extra) in CASES.items():
            if options.only and name not in options.only:
                continue
            run_dir = Path(scratch) / f"case{len(results)}"
            configs = [REPO / "experiments/trainer/cpu.yaml", REPO / "experiments" / f"{experiment}.yaml"]
            run_process([*(f"--config={c}" for c in configs), *extra, *SHORT, "--trainer.enable_progress_bar=false"],
                        run_dir, env)  # fmt: skip
            entry = {"network": name, "experiment": experiment}
            for format in options.formats:
                started = time.perf_counter()
                command = [sys.executable, "-m", "research.cli", "export", f"--config={run_dir / 'config.yaml'}",
                           f"--ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", f"--format={format}"]  # fmt: skip
                done = subprocess.run(command, env=env, capture_output=True, text=True)
                seconds = time.perf_counter() - started
                if done.returncode != 0:
                    entry[format] = {"error": done.stderr.strip().splitlines()[-2:]}
                    continue
                parity = json.loads((run_dir / "export" / f"model.{format}.json").read_text())["parity"]
                entry[format] = {**parity, "command_s": seconds}
            results.append(entry)
            cells = []
            for format in ("onnx", "pt2"):
                found = entry.get(format)
                if found is None:
                    cells += ["not run", "-"]
                elif "error" in found:
                    cells += ["failed: " + " ".join(found["error"])[:60], "-"]
                else:
                    cells += [f"{found['max_abs_difference']:.1e}", f"{found['command_s']:.0f}"]
            rows.append([name, *cells, str(entry.get("onnx", {}).get("inputs", ""))])
    print_rows("Export parity: max |exported - PyTorch| on test inputs; seconds of the whole `medlab export` command",
               ["network", "ONNX diff", "ONNX s", "pt2 diff", "pt2 s", "inputs checked"], rows)  # fmt: skip
    write_results("export_parity", results)


if __name__ == "__main__":
    main()
