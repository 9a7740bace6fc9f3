"""W&B fallback delay: ``make train`` offline, then online against a local server that accepts connections and never
answers (the worst network failure: nothing refuses, nothing times out on its own). The difference is what an
unreachable W&B costs a run; medlab's bound is 35 s.

    python -m benchmarks.wandb_fallback [--repeats 3] [--args "--trainer.max_epochs=1"]
"""

import argparse
import os
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.common import print_rows, write_results

REPO = Path(__file__).resolve().parents[1]


def make_train(args: str, env: dict[str, str]) -> float:
    """Seconds of ``make train ARGS=...`` (the venv already made), which must succeed."""
    started = time.perf_counter()
    subprocess.run(["make", "train", f"ARGS={args}"], cwd=REPO, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--args", default="--trainer.max_epochs=1")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as runs, socket.create_server(("127.0.0.1", 0), backlog=64) as silent:
        args = f"{options.args} --experiment.runs_dir={runs}"
        base = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")} | {"WANDB_SILENT": "true"}
        offline_env = base | {"WANDB_MODE": "offline"}
        online_env = base | {"WANDB_MODE": "online", "WANDB_API_KEY": "0" * 40,
                             "WANDB_BASE_URL": f"http://127.0.0.1:{silent.getsockname()[1]}"}  # fmt: skip
        offline, online = [], []
        for _ in range(options.repeats):  # side by side, so drift of the machine hits both alike
            offline.append(make_train(args, offline_env))
            online.append(make_train(args, online_env))
    delay = [b - a for a, b in zip(offline, online, strict=True)]
    rows = [["offline", f"{statistics.median(offline):.1f}", " ".join(f"{t:.1f}" for t in offline)],
            ["online, silent server", f"{statistics.median(online):.1f}", " ".join(f"{t:.1f}" for t in online)],
            ["difference", f"{statistics.median(delay):.1f}", " ".join(f"{t:.1f}" for t in delay)]]  # fmt: skip
    print_rows(f'make train ARGS="{options.args}": seconds (median, then each run)', ["W&B", "median s", "runs"], rows)
    print(f"W&B fallback delay: {statistics.median(delay):.1f} s (bound: 35 s)")
    write_results("wandb_fallback", [{"offline_s": offline, "online_silent_s": online, "delay_s": delay}])


if __name__ == "__main__":
    main()
