import numpy as np
import pytest
import torch
from lightning.fabric.utilities.seed import seed_everything

from datamodules.image_classification import ArrayDataset
from datamodules.loaders import seed_worker
from datamodules.synthetic import SyntheticLesions
from datamodules.transforms import PRESETS, TransformPreset, build_transform


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("channels", [1, 3])
def test_every_preset_gives_a_normalised_chw_tensor(preset: str, channels: int) -> None:
    image = np.random.default_rng(0).integers(0, 256, (28, 28, channels), dtype=np.uint8)
    out = build_transform(preset)(image=image)["image"]
    assert out.shape == (channels, 28, 28) and out.dtype == torch.float32
    assert out.min() >= -1 and out.max() <= 1


def test_preset_names_and_their_config_type_agree() -> None:
    assert set(PRESETS) == set(TransformPreset.__args__)


def test_unknown_preset_names_the_choices() -> None:
    with pytest.raises(ValueError, match="Unknown transform preset 'flipp'.*flip_rotate"):
        build_transform("flipp")


def test_normalize_matches_medmnist_normalisation() -> None:
    image = np.array([[[0], [255]], [[51], [204]]], dtype=np.uint8)
    out = build_transform("normalize")(image=image)["image"]
    assert torch.allclose(out, (torch.tensor([[0, 255], [51, 204]]) / 255 - 0.5) / 0.5)


def _two_epochs(num_workers: int) -> list[torch.Tensor]:
    seed_everything(7, workers=True)
    data = SyntheticLesions(num_train=32, num_val=4, num_test=4, train_transform="flip_rotate", num_workers=num_workers)
    data.batch_size = 8
    data.setup("fit")
    loader = data.train_dataloader()
    return [images for _ in range(2) for images, _ in loader]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_augmented_batches_repeat_with_the_same_seed(num_workers: int) -> None:
    first, second = _two_epochs(num_workers), _two_epochs(num_workers)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    epoch = len(first) // 2  # and the augmentation differs from one epoch to the next
    assert not all(torch.equal(a, b) for a, b in zip(first[:epoch], first[epoch:], strict=True))


def test_worker_copies_of_the_dataset_draw_different_augmentations() -> None:
    seed_everything(0, workers=True)
    image = np.full((1, 28, 28, 1), 128, dtype=np.uint8)
    image[0, :, :14] = 0
    dataset = ArrayDataset(np.repeat(image, 8, axis=0), np.zeros(8, dtype=np.int64), build_transform("flip_rotate"))
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2, worker_init_fn=seed_worker)
    first, second = list(loader)
    assert not torch.equal(first[0], second[0])
