import numpy as np

from datamodules.synthetic import SyntheticLesions, make_lesion_scans


def test_same_seed_gives_the_same_scans_and_another_seed_does_not() -> None:
    images, labels = make_lesion_scans(20, 32, seed=3)
    again, labels_again = make_lesion_scans(20, 32, seed=3)
    other, _ = make_lesion_scans(20, 32, seed=4)
    assert (images == again).all() and (labels == labels_again).all()
    assert not (images == other).all()


def test_scans_are_balanced_and_lesions_are_brighter_than_tissue() -> None:
    images, labels = make_lesion_scans(200, 32, seed=0)
    assert images.dtype == np.uint8 and images.shape == (200, 32, 32, 1) and labels.mean() == 0.5
    brightest = images.reshape(200, -1).max(axis=1).astype(float)
    assert brightest[labels == 1].mean() > brightest[labels == 0].mean() + 20


def test_splits_differ_and_have_the_configured_sizes() -> None:
    data = SyntheticLesions(num_train=40, num_val=10, num_test=12)
    data.setup()
    assert [len(data.datasets[s]) for s in ("train", "val", "test")] == [40, 10, 12]
    assert not np.array_equal(data.datasets["train"].images[:10], data.datasets["val"].images)
