"""DataLoaders every DataModule shares: seeded workers, shuffled training, each evaluation sample exactly once."""

import json
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.seed import pl_worker_init_function
from lightning.pytorch import LightningDataModule
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info


def seed_worker(worker_id: int) -> None:
    """Lightning's worker seeding, plus the albumentations RNG of the worker's copy of the dataset."""
    pl_worker_init_function(worker_id)
    info = get_worker_info()
    reseed = getattr(info.dataset, "reseed", None) if info is not None else None
    if reseed is not None:
        reseed(torch.initial_seed() % 2**31)


class EpochShuffle(Sampler[int]):
    """A random permutation that depends only on ``(seed, epoch)``, like ``DistributedSampler``'s: a run resumed
    at epoch k draws the batches the uninterrupted run drew, whatever else consumed the global RNG before.
    Lightning calls ``set_epoch`` at the start of every epoch."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


class SplitDataModule(LightningDataModule):
    """Loaders over ``self.datasets[split]``.

    Under DDP, validation, test and predict use an unrepeated sampler (Lightning's default pads with repeats),
    so every sample counts exactly once and metrics equal a single-process run.
    """

    batch_size: int
    num_workers: int
    predict_split = "predict"

    def __init__(self) -> None:
        super().__init__()
        self.datasets: dict[str, Dataset] = {}

    def write_splits(self, splits: dict[str, list[str]], settings: dict[str, Any]) -> None:
        """Save which cases went where as ``splits.json`` in the run folder, so a result traces to its split."""
        trainer = self.trainer
        if trainer is None:
            return
        log_dir = trainer.log_dir  # a broadcast under DDP: every process must ask
        if trainer.is_global_zero and log_dir is not None:
            path = Path(log_dir) / "splits.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({**splits, "settings": settings}, indent=2) + "\n")

    def loader_options(self, split: str) -> dict[str, Any]:
        """Extra ``DataLoader`` arguments for a split (collate function, batch size, pinning)."""
        return {}

    def _loader(self, split: str) -> DataLoader:
        dataset = self.datasets[split]
        trainer = self.trainer
        if split == "train":
            sampler = EpochShuffle(len(dataset), seed=torch.initial_seed() % 2**62)  # seed_everything's seed
        elif trainer is not None and trainer.world_size > 1:
            sampler = UnrepeatedDistributedSampler(
                dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
            )
        else:
            sampler = None
        options = {
            "batch_size": self.batch_size,
            "sampler": sampler,
            "num_workers": self.num_workers,
            "worker_init_fn": seed_worker,
            "persistent_workers": self.num_workers > 0,
            **self.loader_options(split),
        }
        return DataLoader(dataset, **options)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_split)
