"""Data throughput: samples/s of the training DataLoader (augmentation included) next to the samples/s of the
model's own training step, so it shows whether the loader starves the model. MedMNIST at 28 px (real BreastMNIST)
and 224 px (BreastMNIST-shaped file), each augmentation preset; a 3D CT segmentation pipeline (NIfTI read, RAS,
resampling, CT window, foreground-balanced crops, flips) with and without MONAI's ``CacheDataset``.

    python -m benchmarks.throughput [--batches 20]
"""

import argparse
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import seed_everything
from torch import nn

from benchmarks.common import print_rows, write_results
from datamodules import MedMNIST, SegmentationList
from datamodules.data_root import resolve_data_root
from datamodules.segmentation import Intensity, Labels, Patches, Split
from datamodules.transforms import PRESETS
from research.models import ResNet18, UNet

CT = "nifti/totalseg_examples/example_ct_sm.nii.gz"
CT_LABEL = "nifti/totalseg_examples/example_seg.nii.gz"


def samples_per_second(batches: Iterable, count: int, size: Callable = len) -> float:
    """Draws ``count`` batches (after one warm-up batch) and returns samples/s."""
    iterator = iter(batches)
    next(iterator)
    samples, started = 0, time.perf_counter()
    for _ in range(count):
        samples += size(next(iterator))
    return samples / (time.perf_counter() - started)


def cycle(loader: Iterable) -> Iterable:
    while True:
        yield from loader


def model_rate(net: nn.Module, batch: torch.Tensor, target: torch.Tensor, steps: int) -> float:
    """Samples/s of forward + loss + backward + Adam step on one fixed batch."""
    optimizer, loss_fn = torch.optim.Adam(net.parameters()), nn.CrossEntropyLoss()

    def step() -> int:
        optimizer.zero_grad()
        loss_fn(net(batch), target).backward()
        optimizer.step()
        return len(batch)

    return samples_per_second((step() for _ in range(steps + 1)), steps, size=lambda n: n)


def breastmnist_224(folder: Path) -> Path:
    """BreastMNIST's split sizes at 224 px in the MedMNIST ``.npz`` layout (random pixels: the cost is the same)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in (("train", 546), ("val", 78), ("test", 156)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (count, 224, 224), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 2, (count, 1), dtype=np.uint8)
    (folder / "medmnist").mkdir(parents=True, exist_ok=True)
    np.savez(folder / "medmnist" / "breastmnist_224.npz", **arrays)
    return folder


def medmnist_rows(root: Path, size: int, batch_size: int, workers: int, batches: int) -> list[list[str]]:
    rows = []
    net = ResNet18(1, 2, small_input=size == 28)
    model = model_rate(net, torch.randn(batch_size, 1, size, size), torch.randint(0, 2, (batch_size,)), 3)
    for preset in PRESETS:
        data = MedMNIST(flag="breastmnist", size=size, root=str(root) if size != 28 else None, batch_size=batch_size,
                        num_workers=workers, train_transform=preset)  # fmt: skip
        data.setup("fit")
        loader = samples_per_second(cycle(data.train_dataloader()), batches, size=lambda b: len(b[1]))
        rows.append([f"MedMNIST {size} px, {preset}", str(batch_size), str(workers), f"{loader:.0f}", f"{model:.0f}",
                     f"{loader / model:.1f}"])  # fmt: skip
    return rows


def ct_rows(batches: int) -> list[list[str]]:
    root = resolve_data_root()
    cases = [{"image": CT, "label": CT_LABEL, "case": f"ct{i}"} for i in range(4)]
    net = UNet(1, 5, spatial_dims=3, channels=[16, 32, 64, 128], strides=[2, 2, 2])
    target = torch.randint(0, 5, (8, 64, 64, 24))
    model = model_rate(net, torch.randn(8, 1, 64, 64, 24), target, 2)
    rows = []
    for cache in (False, True):
        data = SegmentationList(
            cases=cases, root=str(root), allow_split_overlap=True, split=Split(val_cases=["ct3"], test_cases=["ct3"]),
            spatial_dims=3, labels=Labels(num_classes=5, values=[0, 1, 2, 3, 5], unlisted="background"),
            intensity=Intensity(modality="ct", ct_window=(-175, 250)), spacing=[3.0, 3.0, 3.0],
            patches=Patches(size=[64, 64, 24], per_image=8), batch_size=1, cache=cache,
        )  # fmt: skip
        data.setup("fit")
        loader = samples_per_second(cycle(data.train_dataloader()), batches, size=lambda b: len(b["image"]))
        rows.append([f"3D CT crops 64x64x24, {'CacheDataset' if cache else 'no cache'}", "8", "0", f"{loader:.0f}",
                     f"{model:.1f}", f"{loader / model:.1f}"])  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=20)
    options = parser.parse_args()
    seed_everything(0, verbose=False)
    with tempfile.TemporaryDirectory() as scratch:
        rows = medmnist_rows(Path(scratch), 28, 128, 0, options.batches)
        rows += medmnist_rows(breastmnist_224(Path(scratch)), 224, 32, 0, options.batches)
        # Workers prefetch 2 batches each: draw several epochs so the figure is a rate, not a buffer.
        rows += medmnist_rows(Path(scratch), 224, 32, 2, 3 * options.batches)
        rows += ct_rows(max(options.batches // 4, 3))
    header = ["pipeline", "batch", "workers", "loader samples/s", "model samples/s", "loader / model"]
    print_rows("Data throughput (a ratio below 1: the loader starves the model)", header, rows)
    write_results("throughput", [dict(zip(header, row, strict=True)) for row in rows])


if __name__ == "__main__":
    main()
