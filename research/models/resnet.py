"""MONAI ResNets, with the small-input stem the MedMNIST v2 benchmark uses for 28 px images."""

from monai.networks.nets import resnet18, resnet50
from torch import nn


def _stem(small_input: bool) -> dict:
    # MedMNIST's "ResNet-18 (28)": 3x3 stride-1 first conv and no max-pool, so 28 px keeps its resolution.
    return {"conv1_t_size": 3, "conv1_t_stride": 1, "no_max_pool": True} if small_input else {}


def ResNet18(in_channels: int, num_classes: int, small_input: bool = True) -> nn.Module:  # noqa: N802
    """MONAI ResNet-18 (2D); ``small_input=True`` is the MedMNIST 28 px variant."""
    return resnet18(spatial_dims=2, n_input_channels=in_channels, num_classes=num_classes, **_stem(small_input))


def ResNet50(in_channels: int, num_classes: int, small_input: bool = False) -> nn.Module:  # noqa: N802
    """MONAI ResNet-50 (2D); ``small_input=True`` uses the 28 px stem."""
    return resnet50(spatial_dims=2, n_input_channels=in_channels, num_classes=num_classes, **_stem(small_input))
