"""MONAI DenseNet-121 in 2D."""

from monai.networks.nets import DenseNet121 as MonaiDenseNet121


class DenseNet121(MonaiDenseNet121):
    """MONAI DenseNet-121 (2D) with ``num_classes`` outputs; needs inputs of at least 32 px (5 halvings).

    Args:
        in_channels: image channels (linked from the DataModule).
        num_classes: outputs (linked from the DataModule's classes).
        dropout_prob: dropout after each dense layer.
    """

    def __init__(self, in_channels: int, num_classes: int, dropout_prob: float = 0.0) -> None:
        super().__init__(spatial_dims=2, in_channels=in_channels, out_channels=num_classes, dropout_prob=dropout_prob)
