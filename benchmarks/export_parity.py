"""Export parity and time: each network family trained briefly (the weights need not be good to be compared),
then ``medlab export`` to ONNX and to torch.export, each as its own process; the maximum absolute difference from
PyTorch on the run's test inputs and the seconds each export took (start-up included)."""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import print_rows, write_results
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", help="case names to run (default: all)")
    options = parser.parse_args()
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
            for format in ("onnx", "pt2"):
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
                found = entry[format]
                if "error" in found:
                    cells += ["failed: " + " ".join(found["error"])[:60], "-"]
                else:
                    cells += [f"{found['max_abs_difference']:.1e}", f"{found['command_s']:.0f}"]
            rows.append([name, *cells, str(entry.get("onnx", {}).get("inputs", ""))])
    print_rows("Export parity: max |exported - PyTorch| on test inputs; seconds of the whole `medlab export` command",
               ["network", "ONNX diff", "ONNX s", "pt2 diff", "pt2 s", "inputs checked"], rows)  # fmt: skip
    write_results("export_parity", results)


if __name__ == "__main__":
    main()
