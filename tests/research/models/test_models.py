import pytest
import torch
from torch import nn

from research.models import BasicUNet, DenseNet121, LeNet, ResNet18, ResNet50, SegResNet, UNet


def test_lenet_is_the_classic_cifar_network() -> None:
    net = LeNet(3, 10)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(3, 6, (5, 5)), (6, 16, (5, 5))]
    assert [(fc.in_features, fc.out_features) for fc in linears] == [(400, 120), (120, 84), (84, 10)]
    assert sum(p.numel() for p in net.parameters()) == 62006  # the tutorial's parameter count


@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 64), (1, 17)])
def test_lenet_generalises_to_any_channels_and_size(channels: int, size: int) -> None:
    assert LeNet(channels, 4, input_size=size)(torch.zeros(2, channels, size, size)).shape == (2, 4)


def test_lenet_refuses_inputs_too_small_for_two_convs() -> None:
    with pytest.raises(ValueError, match="input_size >= 16"):
        LeNet(1, 2, input_size=12)


def test_resnet18_28_has_the_medmnist_stem() -> None:
    net = ResNet18(1, 2)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    seen = []
    net.layer1.register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 2)
    assert seen == [(2, 64, 28, 28)]  # no max-pool: the first stage keeps all 28x28 positions
    assert sum(p.numel() for p in net.parameters()) == 11_169_602


def test_resnet50_and_densenet121_build_from_channels_and_classes() -> None:
    assert ResNet50(3, 9)(torch.zeros(1, 3, 64, 64)).shape == (1, 9)
    assert ResNet50(1, 2, small_input=True)(torch.zeros(1, 1, 28, 28)).shape == (1, 2)
    assert DenseNet121(1, 2)(torch.zeros(2, 1, 32, 32)).shape == (2, 2)


@pytest.mark.parametrize(
    ("net", "spatial_dims", "size"),
    [(UNet, 2, 64), (UNet, 3, 32), (BasicUNet, 2, 64), (BasicUNet, 3, 32), (SegResNet, 2, 64), (SegResNet, 3, 32)],
)
def test_segmentation_networks_give_one_logit_map_per_class(net: type, spatial_dims: int, size: int) -> None:
    model = net(1, 3, spatial_dims=spatial_dims)
    image = torch.zeros(1, 1, *[size] * spatial_dims)
    assert model(image).shape == (1, 3, *[size] * spatial_dims)
