"""Training batches are a function of (seed, epoch) alone: shuffle order and the augmentations' own generators."""

from collections.abc import Callable

import pytest
import torch
from lightning.pytorch import seed_everything

from datamodules import SyntheticLesions, SyntheticSegmentation
from datamodules.loaders import EpochBalanced, SplitDataModule
from datamodules.segmentation import Patches


def first_batch(make: Callable[[], SplitDataModule], epoch: int, seed: int = 3) -> torch.Tensor:
    seed_everything(seed)
    data = make()
    data.setup("fit")
    loader = data.train_dataloader()
    torch.rand(100)  # whatever else draws from the global RNG must not matter
    loader.sampler.set_epoch(epoch)  # what Lightning does at the start of each epoch
    batch = next(iter(loader))
    return batch["image"] if isinstance(batch, dict) else batch[0]


@pytest.mark.parametrize(
    "make",
    [
        lambda: SyntheticLesions(num_train=64, num_val=8, num_test=8, batch_size=8, train_transform="flip_rotate"),
        lambda: SyntheticSegmentation(num_images=10, image_size=32, patches=Patches(size=[24, 24]), batch_size=2),
    ],
    ids=["albumentations", "monai"],
)
def test_a_training_batch_depends_on_seed_and_epoch_only(make: Callable[[], SplitDataModule]) -> None:
    torch.testing.assert_close(first_batch(make, epoch=2), first_batch(make, epoch=2), rtol=0, atol=0)
    assert not torch.equal(first_batch(make, epoch=2), first_batch(make, epoch=3))
    assert not torch.equal(first_batch(make, epoch=2), first_batch(make, epoch=2, seed=4))


def test_balanced_sampling_draws_every_class_equally_and_repeats_with_seed_and_epoch() -> None:
    targets = torch.tensor([0] * 900 + [1] * 90 + [2] * 10)  # 90:9:1
    dataset = torch.utils.data.TensorDataset(targets)
    draws = EpochBalanced(dataset, targets, seed=5)
    draws.set_epoch(1)
    indices = list(draws)
    assert len(indices) == 1000
    shares = torch.bincount(targets[indices], minlength=3) / 1000
    torch.testing.assert_close(shares, torch.full((3,), 1 / 3), atol=0.05, rtol=0)
    assert indices == list(draws)  # the same epoch draws the same indices
    draws.set_epoch(2)
    assert indices != list(draws)


def test_balanced_training_loader_and_what_it_refuses() -> None:
    data = SyntheticLesions(num_train=64, num_val=8, num_test=8, batch_size=8, balanced=True)
    data.setup("fit")
    assert isinstance(data.train_dataloader().sampler, EpochBalanced)
    assert not isinstance(data.val_dataloader().sampler, EpochBalanced)  # evaluation reads every sample once
    data = SyntheticSegmentation(num_images=10, image_size=32, patches=Patches(size=[24, 24]), batch_size=2)
    data.balanced = True
    data.setup("fit")
    with pytest.raises(ValueError, match="data.balanced: SyntheticSegmentation's training split has no single class"):
        data.train_dataloader()
