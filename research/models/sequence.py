"""Recurrent networks over variable-length sequences, and a 2.5D CNN + RNN over the slices of a volume."""

from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence


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
            steps = torch.arange(signals.shape[-1], device=signals.device)
            signals = conv(signals * (steps < lengths.to(signals.device)[:, None])[:, None])
            lengths = (lengths + 2 * (self.kernel // 2) - self.kernel) // self.stride + 1
        sequence = signals.transpose(1, 2)
        if lengths is not None:
            sequence = pack_padded_sequence(sequence, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, hidden = self.rnn(sequence)
        hidden = hidden[0] if isinstance(hidden, tuple) else hidden  # LSTM: (h, c)
        last = hidden[-self.directions :]  # the last layer, each direction
        return self.head(torch.cat(list(last), dim=1))


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
