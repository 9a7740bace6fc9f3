"""Plain ``nn.Module`` builders. Each takes ``(in_channels, num_classes, ...)`` first so that a task can
build it from the DataModule's metadata (see ``ImageClassifier(net=...)``)."""

from research.models.densenet import DenseNet121
from research.models.fusion import FusionNet
from research.models.lenet import LeNet
from research.models.registration import GlobalNet, LocalNet, VoxelMorphUNet
from research.models.resnet import ResNet18, ResNet50
from research.models.segmentation import BasicUNet, SegResNet, UNet
from research.models.sequence import RecurrentNet, ResNet1d, SliceRecurrentNet

__all__ = [
    "BasicUNet",
    "DenseNet121",
    "FusionNet",
    "GlobalNet",
    "LeNet",
    "LocalNet",
    "ResNet18",
    "ResNet1d",
    "ResNet50",
    "RecurrentNet",
    "SegResNet",
    "SliceRecurrentNet",
    "UNet",
    "VoxelMorphUNet",
]
