"""DataLoaders every DataModule shares: seeded workers, shuffled training, each evaluation sample exactly once."""

from abc import ABC, abstractmethod
from typing import Any

import torch
from lightning.fabric.utilities.seed import pl_worker_init_function
from lightning.pytorch import Callback, LightningDataModule
from monai.data.utils import set_rnd
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, get_worker_info

from datamodules.spec import DataSpec


def seed_augmentations(dataset: Dataset, seed: int) -> None:
    """Seed the generators augmentations keep for themselves: albumentations' (``reseed`` of our 2D datasets),
    else MONAI transforms' ``R`` (``set_rnd`` walks the dataset and its transforms)."""
    reseed = getattr(dataset, "reseed", None)
    if reseed is not None:
        reseed(seed)
    else:
        set_rnd(dataset, seed)


def seed_worker(worker_id: int) -> None:
    """Lightning's worker seeding, plus the augmentation generators of the worker's copy of the dataset."""
    pl_worker_init_function(worker_id)
    info = get_worker_info()
    if info is not None:
        seed_augmentations(info.dataset, torch.initial_seed() % 2**31)


class EpochShuffle(Sampler[int]):
    """A random permutation that depends only on ``(seed, epoch)``, like ``DistributedSampler``'s: a run resumed
    at epoch k draws the batches the uninterrupted run drew, whatever else consumed the global RNG before.
    Lightning calls ``set_epoch`` at the start of every epoch; it also reseeds the dataset's augmentations from
    ``(seed, epoch)``, so with ``num_workers: 0`` a resumed run repeats the augmentations too. (Worker processes
    are seeded when they start, from torch's RNG: with workers a resume is exact up to the augmentations.)"""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        seed_augmentations(self.dataset, (self.seed + epoch) % 2**31)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(len(self.dataset), generator=generator).tolist())

    def __len__(self) -> int:
        return len(self.dataset)


class EpochBalanced(EpochShuffle):
    """As many draws per epoch as the split has samples, with replacement, every class equally likely: the rare
    classes are seen as often as the common ones (oversampled), the common ones subsampled. The draws depend only on
    ``(seed, epoch)``, as ``EpochShuffle``'s do, so a resumed run repeats them."""

    def __init__(self, dataset: Dataset, targets: torch.Tensor, seed: int) -> None:
        super().__init__(dataset, seed)
        counts = torch.bincount(targets)
        self.weights = (1.0 / counts.clamp(min=1).double())[targets]

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.multinomial(self.weights, len(self.weights), replacement=True, generator=generator).tolist())


class ResumableLoader(DataLoader):
    """The training ``DataLoader``, which Lightning can checkpoint within an epoch (its ``state_dict`` interface): a
    run resumed from a checkpoint written before batch k of an epoch (a requeued SLURM job's) draws the epoch's
    batches again in their ``(seed, epoch)`` order and passes over the first k, loading them, so the dataset's own
    augmentation generators stand where the uninterrupted run's stood. A batch counts as done when the next one is
    asked for, so the state fits a checkpoint written in ``on_train_batch_start``. Lightning loads the state only
    when it restarts within an epoch, never after an epoch's end."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.done = 0  # batches of the current epoch the loop has finished with
        self.skip = 0  # to pass over at the start of the next epoch

    def __iter__(self):
        skip, self.skip, self.done = self.skip, 0, 0
        for index, batch in enumerate(super().__iter__()):
            if index >= skip:
                yield batch
            self.done = index + 1

    def state_dict(self) -> dict[str, int]:
        return {"batches": self.done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.skip = int(state["batches"])


class EvaluationShard(DistributedSampler):
    """Process ``rank`` of ``num_replicas`` reads samples ``rank, rank + num_replicas, ...``, without the repeats
    torch's ``DistributedSampler`` pads with, so under DDP every evaluation sample counts exactly once. A
    ``DistributedSampler``, so Lightning keeps it as it is."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.indices = range(rank, len(dataset), num_replicas)
        self.num_samples, self.total_size = len(self.indices), len(dataset)

    def __iter__(self):
        return iter(self.indices)


class SplitDataModule(LightningDataModule, ABC):
    """Loaders over ``self.datasets[split]``, and the ``spec`` every medlab DataModule declares.

    ``setup`` loads and checks every split it will ever serve, before the first training step; ``medlab`` calls it
    before it creates a run folder, so bad data leaves nothing behind. Under DDP, validation, test and predict use
    an unrepeated sampler (Lightning's default pads with repeats), so every sample counts exactly once and metrics
    equal a single-process run.
    """

    batch_size: int
    num_workers: int
    balanced: bool = False  # training batches drawn class-balanced (``EpochBalanced``), for single-label classification

    def __init__(self) -> None:
        super().__init__()
        self.datasets: dict[str, Dataset] = {}
        # JSON files for the run folder (name -> content), written there by ``medlab``'s runner.
        self.run_files: dict[str, dict[str, Any]] = {}
        # A name per item of a split, in its order (a case id, ``record:sample``), for per-item results; an index
        # names the items of a split left out.
        self.item_names: dict[str, list[str]] = {}
        # What ``medlab predict`` read from files: the columns that name each predicted item (``input``; an ECG beat's
        # ``sample``...), and the inputs it could not read (path -> reason).
        self.predicted_inputs: list[dict[str, Any]] = []
        self.unreadable: dict[str, str] = {}

    @property
    @abstractmethod
    def spec(self) -> DataSpec:
        """What the task needs to know of this data (``datamodules.spec.DataSpec``); ``medlab`` links it into the
        task when both are built, so it must not need ``setup`` (except where it says so, as class weights do)."""

    def record_splits(self, splits: dict[str, list[str]], settings: dict[str, Any]) -> None:
        """Which cases went where, for ``splits.json`` in the run folder, so a result traces to its split; the cases
        also name the items of each split (its datasets hold them in this order)."""
        self.run_files["splits.json"] = {**splits, "settings": settings}
        self.item_names.update({split: list(cases) for split, cases in splits.items()})

    def train_targets(self) -> torch.Tensor:
        """The class index of every training sample, for class-balanced sampling; single-label classification only."""
        targets = getattr(self.datasets["train"], "targets", None)
        if targets is None or targets.ndim != 1 or targets.is_floating_point():
            raise ValueError(
                f"data.balanced: {type(self).__name__}'s training split has no single class per sample to balance"
            )
        return targets

    def split_size(self, split: str) -> int:
        """Samples (or cases) of a split that ``setup`` has read; 0 for one it has not."""
        return len(self.datasets[split]) if split in self.datasets else 0

    @property
    def preprocessing(self) -> dict[str, Any]:
        """How an input becomes what the network reads at evaluation, as plain data: written beside an exported
        model, so it can be used without medlab."""
        return {}

    def prediction_writer(self) -> Callback | None:
        """What writes ``medlab predict``'s output in this data's own format, when the task's writer does not (a
        segmentation DataModule writes masks in each input's format and geometry)."""
        return None

    def loader_options(self, split: str) -> dict[str, Any]:
        """Extra ``DataLoader`` arguments for a split (collate function, batch size, pinning)."""
        return {}

    def _loader(self, split: str) -> DataLoader:
        dataset = self.datasets[split]
        trainer = self.trainer
        seed = torch.initial_seed() % 2**62  # seed_everything's seed
        if split == "train" and self.balanced:
            sampler = EpochBalanced(dataset, self.train_targets(), seed)
        elif split == "train":
            sampler = EpochShuffle(dataset, seed)
        elif trainer is not None and trainer.world_size > 1:
            sampler = EvaluationShard(dataset, num_replicas=trainer.world_size, rank=trainer.global_rank)
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
        return (ResumableLoader if split == "train" else DataLoader)(dataset, **options)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader | list:
        """No loader for a DataModule without a validation split (a refit on all training data): Lightning skips
        validation then."""
        return self._loader("val") if "val" in self.datasets else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    @property
    def predict_split(self) -> str:
        """What ``medlab predict`` reads: the files it was given, else the test split."""
        return "predict" if "predict" in self.datasets else "test"

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_split)
