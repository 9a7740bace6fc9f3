"""Registration networks (MONAI's): two input channels (moving, fixed), one output channel per spatial axis (the
displacement, or a velocity the task integrates)."""

from collections.abc import Sequence

from monai.networks import nets


class LocalNet(nets.LocalNet):
    """MONAI's LocalNet (Hu et al. 2018): an encoder-decoder whose levels each add a displacement.

    Args:
        in_channels: moving + fixed channels (linked).
        out_channels: the displacement's components, one per spatial axis (linked).
        spatial_dims: 2 or 3.
        num_channel_initial: channels of the first level (doubled at each level).
        extract_levels: the levels whose outputs are summed into the displacement (0: full resolution).
        out_kernel_initializer: ``zeros`` starts from the identity transform (MONAI's default, ``kaiming_uniform``,
            starts from displacements of tens of voxels once integrated).
    """

    def __init__(
        self, in_channels: int, out_channels: int, spatial_dims: int = 3, num_channel_initial: int = 16,
        extract_levels: Sequence[int] = (0, 1, 2, 3), out_kernel_initializer: str = "zeros",
    ) -> None:  # fmt: skip
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels,
                         num_channel_initial=num_channel_initial, extract_levels=tuple(extract_levels),
                         out_kernel_initializer=out_kernel_initializer)  # fmt: skip


class VoxelMorphUNet(nets.VoxelMorphUNet):
    """VoxelMorph's U-Net backbone (Balakrishnan et al. 2019), as MONAI builds it.

    Args:
        in_channels: moving + fixed channels (linked).
        out_channels: the displacement's components, one per spatial axis (linked).
        spatial_dims: 2 or 3.
        channels: encoder and decoder channels (VoxelMorph's ``vm2``: 16, 32, 32, 32, 32, 32, 32, 32, 32, 16).
        final_conv_channels: channels of the convolutions after the U-Net.
    """

    def __init__(
        self, in_channels: int, out_channels: int, spatial_dims: int = 3,
        channels: Sequence[int] = (16, 32, 32, 32, 32, 32, 32, 32, 32, 16),
        final_conv_channels: Sequence[int] = (16, 16),
    ) -> None:  # fmt: skip
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, unet_out_channels=channels[-1],
                         channels=channels, final_conv_channels=[*final_conv_channels, out_channels])  # fmt: skip


class GlobalNet(nets.GlobalNet):
    """MONAI's GlobalNet: an encoder regressing an affine transform, returned as a displacement.

    Args:
        in_channels: moving + fixed channels (linked).
        out_channels: one per spatial axis (linked; the affine has no other output).
        image_size: the (padded) input size; GlobalNet's dense layer is built for it.
        num_channel_initial: channels of the first level.
        depth: downsampling levels.
    """

    def __init__(
        self, in_channels: int, out_channels: int, image_size: Sequence[int], num_channel_initial: int = 16,
        depth: int = 3,
    ) -> None:  # fmt: skip
        super().__init__(image_size=list(image_size), spatial_dims=len(image_size), in_channels=in_channels,
                         num_channel_initial=num_channel_initial, depth=depth)  # fmt: skip
