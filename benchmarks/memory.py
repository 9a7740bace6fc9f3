"""Memory: one training epoch over a generated 224 px MedMNIST-format set larger than the memory a process may use,
read the way ``MedMNIST`` reads it (converted once into the cache, rows read when asked for), beside a memory map
of the same file; peak resident memory and images/s of each, each in a fresh process.

    python -m benchmarks.memory [--images 20000] [--folder DIR]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from benchmarks.common import print_rows, write_results

SIDE, CHANNELS, FLAG = 224, 3, "pathmnist"  # a 3-channel flag: ~150 KB an image


def write_member(archive: zipfile.ZipFile, key: str, shape: tuple[int, ...], fill, dtype=np.uint8) -> None:
    """One ``.npy`` member written in chunks, so the generator never holds the array."""
    with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array_header_2_0(member, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                                      "shape": shape})  # fmt: skip
        for start in range(0, shape[0], 1000):
            member.write(fill(min(1000, shape[0] - start), start).astype(dtype).tobytes())


def generate(folder: Path, images: int) -> Path:
    """``<folder>/medmnist/pathmnist_224.npz``: ``images`` training images (random pixels, so nothing compresses),
    1 000 each for validation and test, labels cycling over the 9 classes."""
    path = folder / "medmnist" / f"{FLAG}_{SIDE}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for split, count in (("train", images), ("val", 1000), ("test", 1000)):
            write_member(archive, f"{split}_images", (count, SIDE, SIDE, CHANNELS),
                         lambda n, _: rng.integers(0, 256, (n, SIDE, SIDE, CHANNELS), dtype=np.uint8))  # fmt: skip
            write_member(
                archive, f"{split}_labels", (count, 1), lambda n, start: (np.arange(start, start + n) % 9)[:, None]
            )
    return path


def measure(folder: Path, how: str) -> dict:
    """In this (fresh) process: one epoch of the training loader, its peak RSS and rate."""
    import torch

    from datamodules import MedMNIST

    data = MedMNIST(flag=FLAG, size=SIDE, root=str(folder), batch_size=128)
    started = time.perf_counter()
    data.setup("fit")  # converts into the cache the first time
    prepared = time.perf_counter() - started
    if how == "memory map":
        images = np.load(next(data.read_split("train")[0].path.parent.glob("train_images.npy")), mmap_mode="r")
        data.datasets["train"].images = images
    loader = torch.utils.data.DataLoader(data.datasets["train"], batch_size=128, shuffle=True)
    started, seen = time.perf_counter(), 0
    for batch, _ in loader:
        seen += len(batch)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB -> GiB
    return {"how": how, "images": seen, "setup_s": prepared, "epoch_s": seconds, "images_per_s": seen / seconds,
            "peak_rss_gib": peak}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--folder", type=Path, default=None, help="where to generate the set (default: a temp dir)")
    parser.add_argument("--measure", choices=["rows", "memory map"], default=None, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.measure:
        print(json.dumps(measure(options.folder, options.measure)))
        return
    with tempfile.TemporaryDirectory(dir=options.folder) as temporary:
        folder = Path(temporary)
        started = time.perf_counter()
        path = generate(folder, options.images)
        print(f"generated {path} ({path.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - started:.0f} s")
        rows = []
        for how in ("rows", "memory map"):
            command = [sys.executable, "-m", "benchmarks.memory", "--folder", str(folder), "--measure", how]
            env = {**os.environ, "MEDLAB_CACHE": str(folder / "cache")}
            result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    print_rows(
        f"One epoch over {options.images} images of {SIDE} px x {CHANNELS} (uint8, "
        f"{options.images * SIDE * SIDE * CHANNELS / 2**30:.2f} GiB), batch 128",
        ["reading", "setup s", "epoch s", "images/s", "peak RSS GiB"],
        [[r["how"], f"{r['setup_s']:.1f}", f"{r['epoch_s']:.1f}", f"{r['images_per_s']:.0f}",
          f"{r['peak_rss_gib']:.2f}"] for r in rows],
    )  # fmt: skip
    write_results("memory", rows)


if __name__ == "__main__":
    main()
