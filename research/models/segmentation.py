"""MONAI segmentation networks, built from ``(in_channels, num_classes)`` like the classifiers."""

from collections.abc import Sequence

from monai.networks import nets


class UNet(nets.UNet):
    """MONAI's residual UNet (2D or 3D).

    Args:
        in_channels: image channels (linked from the DataModule).
        num_classes: classes, background included (linked).
        spatial_dims: 2 or 3.
        channels: channels of each level.
        strides: downsampling of each level after the first.
        num_res_units: residual units per block (0: plain convolutions).
        dropout: dropout probability.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        spatial_dims: int = 2,
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        strides: Sequence[int] = (2, 2, 2, 2),
        num_res_units: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(
            spatial_dims=spatial_dims, in_channels=in_channels, out_channels=num_classes, channels=channels,
            strides=strides, num_res_units=num_res_units, dropout=dropout,
        )  # fmt: skip


class BasicUNet(nets.BasicUNet):
    """MONAI's BasicUNet: the original U-Net layout with instance norm.

    Args:
        in_channels: image channels (linked from the DataModule).
        num_classes: classes, background included (linked).
        spatial_dims: 2 or 3.
        features: channels of the five levels and of the last convolution.
        dropout: dropout probability.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        spatial_dims: int = 2,
        features: Sequence[int] = (32, 32, 64, 128, 256, 32),
        dropout: float = 0.0,
    ) -> None:
        super().__init__(
            spatial_dims=spatial_dims, in_channels=in_channels, out_channels=num_classes, features=features,
            dropout=dropout,
        )  # fmt: skip


class SegResNet(nets.SegResNet):
    """MONAI's SegResNet (BraTS 2018 winner's encoder-decoder).

    Args:
        in_channels: image channels (linked from the DataModule).
        num_classes: classes, background included (linked).
        spatial_dims: 2 or 3.
        init_filters: channels of the first level.
    """

    def __init__(self, in_channels: int, num_classes: int, spatial_dims: int = 3, init_filters: int = 16) -> None:
        super().__init__(
            spatial_dims=spatial_dims, in_channels=in_channels, out_channels=num_classes, init_filters=init_filters
        )
