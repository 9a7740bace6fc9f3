"""MONAI ResNets, with the small-input stem the MedMNIST v2 benchmark uses for 28 px images."""

from monai.networks.nets.resnet import ResNet, ResNetBlock, ResNetBottleneck, get_inplanes


def _stem(small_input: bool) -> dict:
    # MedMNIST's "ResNet-18 (28)": 3x3 stride-1 first conv and no max-pool, so 28 px keeps its resolution.
    return {"conv1_t_size": 3, "conv1_t_stride": 1, "no_max_pool": True} if small_input else {}


class ResNet18(ResNet):
    """MONAI ResNet-18 (2D); ``small_input=True`` is the MedMNIST 28 px variant.

    ``width`` is the first stage's channel count (64 in ResNet-18; the later stages double it): a leaner net for
    small datasets costs about ``(width / 64) ** 2`` of the compute.

    Args:
        in_channels: image channels (linked from the DataModule).
        num_classes: outputs (linked from the DataModule's classes).
        small_input: the 28 px stem (3x3 stride-1 first conv, no max-pool).
        width: channels of the first stage (64 in ResNet-18).
    """

    def __init__(self, in_channels: int, num_classes: int, small_input: bool = True, width: int = 64) -> None:
        super().__init__(
            ResNetBlock, [2, 2, 2, 2], [width * k for k in (1, 2, 4, 8)], spatial_dims=2,
            n_input_channels=in_channels, num_classes=num_classes, **_stem(small_input),
        )  # fmt: skip


class ResNet50(ResNet):
    """MONAI ResNet-50 (2D); ``small_input=True`` uses the 28 px stem.

    Args:
        in_channels: image channels (linked from the DataModule).
        num_classes: outputs (linked from the DataModule's classes).
        small_input: the 28 px stem (3x3 stride-1 first conv, no max-pool).
    """

    def __init__(self, in_channels: int, num_classes: int, small_input: bool = False) -> None:
        super().__init__(
            ResNetBottleneck, [3, 4, 6, 3], get_inplanes(), spatial_dims=2, n_input_channels=in_channels,
            num_classes=num_classes, **_stem(small_input),
        )  # fmt: skip
