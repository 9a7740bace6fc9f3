"""Variable-length sequences (signals of shape (C, T)) and a synthetic default for the RNN experiments."""

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

from datamodules.loaders import SplitDataModule
from datamodules.spec import DataSpec, TaskType, inverse_frequencies
from datamodules.validation import check_split_targets


class SequenceDataset(Dataset):
    """(signal (C, T) float tensor, target) pairs; sequences may differ in length."""

    def __init__(
        self, signals: list[np.ndarray], targets: np.ndarray, transform: Callable[[Tensor], Tensor] | None = None
    ) -> None:
        if len(signals) != len(targets):
            raise ValueError(f"{len(signals)} sequences for {len(targets)} targets")
        self.signals = [torch.as_tensor(s, dtype=torch.float32) for s in signals]
        self.targets = torch.as_tensor(targets)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.signals)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        signal = self.signals[index]
        return (self.transform(signal) if self.transform else signal), self.targets[index]


def pad_collate(batch: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
    """Zero-pad to the longest sequence: ``(signals (B, C, T_max), lengths (B,), targets)``."""
    lengths = torch.tensor([signal.shape[-1] for signal, _ in batch])
    signals = pad_sequence([signal.T for signal, _ in batch], batch_first=True).transpose(1, 2).contiguous()
    return signals, lengths, torch.stack([target for _, target in batch])


class SequenceDataModule(SplitDataModule):
    """Batches of padded variable-length sequences; subclasses fill ``self.datasets`` in ``setup``.

    Args:
        batch_size: sequences per batch.
        num_workers: DataLoader worker processes.
        balanced: draw training batches class-balanced (with replacement; classification), against imbalance.
    """

    num_classes: int
    in_channels: int
    task: TaskType
    class_names: list[str]

    def __init__(self, batch_size: int = 64, num_workers: int = 0, balanced: bool = False) -> None:
        super().__init__()
        self.batch_size, self.num_workers, self.balanced = batch_size, num_workers, balanced

    def loader_options(self, split: str) -> dict[str, Any]:
        return {"collate_fn": pad_collate}

    def check_splits(self, source: str) -> None:
        """Every split non-empty, validation and test holding the classes their metrics need."""
        for split in ("train", "val", "test"):
            targets = self.datasets[split].targets.numpy()
            check_split_targets(targets, source, split, self.task, self.num_classes, self.class_names)

    @property
    def spec(self) -> DataSpec:
        """For classification it reads the splits (``setup``) for the class weights: inverse class frequencies of the
        training split (mean 1), for an imbalance-weighted loss."""
        weights = None
        if self.task == "multiclass":
            self.setup()
            weights = inverse_frequencies(self.datasets["train"].targets, self.num_classes)
        return DataSpec(self.task, self.num_classes, self.in_channels, 1, list(self.class_names), None, weights)


class SyntheticSequences(SequenceDataModule):
    """Noisy sinusoids of variable length.

    ``task: multiclass``: the class is the frequency band (``num_classes`` bands). ``task: regression``: the
    target is the next ``horizon`` samples of the signal (forecasting).

    Args:
        task: ``multiclass`` (the frequency band) or ``regression`` (forecast the next ``horizon`` samples).
        num_classes: frequency bands (classification).
        horizon: samples to forecast (regression).
        num_train: training sequences.
        num_val: validation sequences.
        num_test: test sequences.
        min_length: shortest sequence.
        max_length: longest sequence.
        noise: standard deviation of the added noise.
        seed: generator seed of the data.
        **loader_kwargs: ``batch_size``, ``num_workers``.
    """

    def __init__(
        self,
        task: Literal["multiclass", "regression"] = "multiclass",
        num_classes: int = 3,
        horizon: int = 10,
        num_train: int = 600,
        num_val: int = 150,
        num_test: int = 150,
        min_length: int = 40,
        max_length: int = 120,
        noise: float = 0.3,
        seed: int = 0,
        **loader_kwargs: Any,
    ) -> None:
        super().__init__(**loader_kwargs)
        self.task = task
        self.num_classes = num_classes if task == "multiclass" else horizon
        self.class_names = [f"band{i}" for i in range(num_classes)] if task == "multiclass" else []
        self.in_channels = 1
        self.horizon, self.noise, self.seed = horizon, noise, seed
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.lengths = (min_length, max_length)

    def make(self, split: str) -> SequenceDataset:
        rng = np.random.default_rng([self.seed, ("train", "val", "test").index(split)])
        signals, targets = [], []
        for _ in range(self.sizes[split]):
            length = int(rng.integers(*self.lengths, endpoint=True))
            t = np.arange(length + self.horizon)
            if self.task == "multiclass":
                label = int(rng.integers(self.num_classes))
                frequency = 0.02 + 0.04 * label + rng.uniform(0, 0.02)
            else:
                frequency = rng.uniform(0.02, 0.1)
            wave = np.sin(2 * np.pi * frequency * t + rng.uniform(0, 2 * np.pi))
            signal = wave[:length] + rng.normal(0, self.noise, length)
            signals.append(signal[None].astype(np.float32))
            targets.append(label if self.task == "multiclass" else wave[length:].astype(np.float32))
        return SequenceDataset(signals, np.array(targets))

    def setup(self, stage: str | None = None) -> None:
        for split in ("train", "val", "test"):
            if split not in self.datasets:
                self.datasets[split] = self.make(split)
        self.check_splits(type(self).__name__)
