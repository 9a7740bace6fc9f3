"""LeNet as in the classic PyTorch CIFAR-10 tutorial, for any channel count and input size."""

from torch import Tensor, nn


class LeNet(nn.Module):
    """conv 6@5x5 -> max-pool 2 -> conv 16@5x5 -> max-pool 2 -> FC 120 -> 84 -> ``num_classes``.

    Args:
        in_channels: image channels (linked from the DataModule).
        num_classes: outputs (linked from the DataModule's classes).
        input_size: image side the first FC layer is sized for (32 for CIFAR).
    """

    def __init__(self, in_channels: int, num_classes: int, input_size: int = 32) -> None:
        super().__init__()
        spatial = ((input_size - 4) // 2 - 4) // 2
        if spatial < 1:
            raise ValueError(f"LeNet needs input_size >= 16 (two 5x5 convs and two 2x2 pools), got {input_size}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * spatial * spatial, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
