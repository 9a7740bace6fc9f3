"""Recurrent networks over variable-length sequences, and a 2.5D CNN + RNN over the slices of a volume."""

from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence


def valid_steps(lengths: Tensor, steps: int) -> Tensor:
    """(B, 1, steps) mask, true where a step lies within its sequence."""
    return (torch.arange(steps, device=lengths.device) < lengths[:, None])[:, None]


class RecurrentNet(nn.Module):
    """Optional 1D-CNN front end (``conv_layers`` strided convolutions), then an LSTM or GRU over the packed
    sequence, then a linear head on the final hidden state (both directions when bidirectional).

    Takes ``(signals (B, C, T), lengths (B,))``; padding beyond each length never reaches the output, so a batch
    gives what each sequence gives alone. ``lengths=None``: every sequence fills the batch's length, read unpacked
    (what ``torch.export`` can trace; the same outputs).

    Args:
        in_channels: signal channels (linked).
        num_outputs: classes, or forecast horizon for regression (linked).
        rnn: ``lstm`` or ``gru``.
        hidden_size: RNN units per direction.
        num_layers: stacked RNN layers.
        bidirectional: read each sequence both ways.
        dropout: dropout between RNN layers and before the head.
        conv_channels: channels of the 1D-CNN front end (0: none).
        conv_kernel: its kernel size.
        conv_stride: its stride (shortens the sequence the RNN reads).
        conv_layers: strided convolutions in the front end.
    """

    def __init__(
        self,
        in_channels: int,
        num_outputs: int,
        rnn: Literal["lstm", "gru"] = "lstm",
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        conv_channels: int = 0,
        conv_kernel: int = 7,
        conv_stride: int = 1,
        conv_layers: int = 1,
    ) -> None:
        super().__init__()
        self.front = nn.ModuleList()
        for _ in range(conv_layers if conv_channels else 0):
            # Zero "same" padding: with the batch's padding zeroed, the conv sees it exactly as its own.
            self.front.append(
                nn.Sequential(
                    nn.Conv1d(in_channels, conv_channels, conv_kernel, conv_stride, padding=conv_kernel // 2),
                    nn.ReLU(),
                )
            )
            in_channels = conv_channels
        self.kernel, self.stride = conv_kernel, conv_stride
        recurrent = {"lstm": nn.LSTM, "gru": nn.GRU}[rnn]
        self.rnn = recurrent(
            in_channels, hidden_size, num_layers, batch_first=True, bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )  # fmt: skip
        self.directions = 2 if bidirectional else 1
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size * self.directions, num_outputs))

    def forward(self, signals: Tensor, lengths: Tensor | None = None) -> Tensor:
        for conv in self.front:
            if lengths is None:
                signals = conv(signals)
                continue
            # Zero whatever lies past each length: the conv's window reaches a few samples beyond the end.
            signals = conv(signals * valid_steps(lengths.to(signals.device), signals.shape[-1]))
            lengths = (lengths + 2 * (self.kernel // 2) - self.kernel) // self.stride + 1
        sequence = signals.transpose(1, 2)
        if lengths is not None:
            sequence = pack_padded_sequence(sequence, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, hidden = self.rnn(sequence)
        hidden = hidden[0] if isinstance(hidden, tuple) else hidden  # LSTM: (h, c)
        last = hidden[-self.directions :]  # the last layer, each direction
        return self.head(torch.cat(list(last), dim=1))


class ResidualBlock1d(nn.Module):
    """Two convolutions with batch norm and a shortcut (strided 1x1 convolution when the shape changes), as in
    ResNet; everything past a sequence's length is zeroed before each convolution, so padding never leaks in."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv1d(channels_in, channels_out, kernel, stride, padding=kernel // 2, bias=False)
        self.norm1 = nn.BatchNorm1d(channels_out)
        self.conv2 = nn.Conv1d(channels_out, channels_out, kernel, padding=kernel // 2, bias=False)
        self.norm2 = nn.BatchNorm1d(channels_out)
        self.dropout = nn.Dropout(dropout)
        self.shortcut = (
            nn.Sequential(nn.Conv1d(channels_in, channels_out, 1, stride, bias=False), nn.BatchNorm1d(channels_out))
            if stride != 1 or channels_in != channels_out
            else nn.Identity()
        )

    def forward(self, signals: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        signals = signals * valid_steps(lengths, signals.shape[-1])
        lengths = (lengths - 1) // self.stride + 1  # "same" padding: ceil(length / stride)
        hidden = self.dropout(torch.relu(self.norm1(self.conv1(signals))))
        hidden = self.norm2(self.conv2(hidden * valid_steps(lengths, hidden.shape[-1])))
        return torch.relu(hidden + self.shortcut(signals)), lengths


class ResNet1d(nn.Module):
    """A residual 1D CNN over whole variable-length records (ECG rhythm, as Hannun et al. 2019), then global average
    and max pooling over each record's own length and a linear head.

    Hand-written rather than MONAI's ``ResNet(spatial_dims=1)``: that one pools over the padded length and cannot zero
    the padding between layers, so a record's output would depend on the batch it is in. Here it does not (tested).

    Args:
        in_channels: signal channels (linked).
        num_outputs: classes (linked).
        channels: output channels of each stage; every stage after the stem halves the length.
        blocks: residual blocks per stage.
        kernel: convolution kernel size.
        stem_stride: stride of the first convolution.
        dropout: dropout inside each block and before the head.
    """

    def __init__(
        self,
        in_channels: int,
        num_outputs: int,
        channels: list[int] = [32, 64, 128, 128],  # noqa: B006 (read by jsonargparse, never mutated)
        blocks: int = 1,
        kernel: int = 9,
        stem_stride: int = 2,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.stem_stride = stem_stride
        self.stem = nn.Sequential(
            nn.Conv1d(in_channels, channels[0], kernel, stem_stride, padding=kernel // 2, bias=False),
            nn.BatchNorm1d(channels[0]),
            nn.ReLU(),
        )
        self.stages = nn.ModuleList()
        previous = channels[0]
        for stage, width in enumerate(channels):
            for block in range(blocks):
                stride = 2 if block == 0 and stage > 0 else 1
                self.stages.append(ResidualBlock1d(previous, width, kernel, stride, dropout))
                previous = width
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * previous, num_outputs))

    def forward(self, signals: Tensor, lengths: Tensor | None = None) -> Tensor:
        if lengths is None:
            lengths = torch.full((len(signals),), signals.shape[-1], device=signals.device)
        lengths = lengths.to(signals.device)
        hidden = self.stem(signals * valid_steps(lengths, signals.shape[-1]))
        lengths = (lengths - 1) // self.stem_stride + 1
        for block in self.stages:
            hidden, lengths = block(hidden, lengths)
        valid = valid_steps(lengths, hidden.shape[-1])
        average = (hidden * valid).sum(-1) / lengths[:, None]
        largest = hidden.masked_fill(~valid, float("-inf")).amax(-1)
        return self.head(torch.cat([average, largest], dim=1))


class SliceRecurrentNet(nn.Module):
    """2.5D: a small 2D CNN encodes each slice of a (B, C, D, H, W) volume, a GRU/LSTM reads the D slice
    features in order, a linear head classifies the volume.

    Args:
        in_channels: volume channels (linked).
        num_classes: outputs (linked from the DataModule's classes).
        features: channels of the slice encoder.
        rnn: ``lstm`` or ``gru`` over the slices.
        hidden_size: RNN units per direction.
        bidirectional: read the slices both ways.
        pooling: ``max`` or ``avg`` over the RNN outputs.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        features: int = 32,
        rnn: Literal["lstm", "gru"] = "gru",
        hidden_size: int = 64,
        bidirectional: bool = True,
        pooling: Literal["max", "avg"] = "max",
    ) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]

        self.encoder = nn.Sequential(
            *block(in_channels, features // 2), *block(features // 2, features), *block(features, features),
            # Max pooling keeps a small focal finding that averaging over the whole slice would wash out.
            nn.AdaptiveMaxPool2d(1) if pooling == "max" else nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.LayerNorm(features),  # slice features on one scale: the recurrent gates start unsaturated
        )  # fmt: skip
        self.sequence = RecurrentNet(
            features, num_classes, rnn=rnn, hidden_size=hidden_size, bidirectional=bidirectional
        )

    def forward(self, volumes: Tensor) -> Tensor:
        batch, channels, depth, height, width = volumes.shape
        slices = volumes.transpose(1, 2).reshape(batch * depth, channels, height, width)
        features = self.encoder(slices).reshape(batch, depth, -1).transpose(1, 2)  # (B, F, D)
        return self.sequence(features, torch.full((batch,), depth, dtype=torch.long))
