"""Image + table fusion: an image (or signal) encoder and a table encoder joined late, or the table modulating the
image features (FiLM); either branch can be switched off, so modality ablations are one setting."""

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn


class FusionNet(nn.Module):
    """``encoder`` turns an input into ``embedding`` features; a two-layer MLP turns a table row into as many. Then:

    - ``concat`` (late fusion): the two embeddings concatenated, a linear head;
    - ``film`` (feature-wise linear modulation, Perez et al. 2018): the table embedding gives a scale and a shift per
      image feature, ``h = image * (1 + scale) + shift``, then a linear head.

    ``image: false`` or ``table: false`` leaves that branch out (no parameters): the same model as a single-modality
    baseline.

    Args:
        in_channels: image channels (linked from the DataModule).
        table_features: encoded table columns (linked from the DataModule).
        num_classes: outputs (linked from the DataModule's classes).
        encoder: image or signal network from ``research.models`` (built with ``embedding`` outputs).
        embedding: features of each branch.
        fusion: ``concat`` or ``film``.
        image: use the image branch.
        table: use the table branch.
        dropout: dropout on the fused features.
    """

    def __init__(
        self,
        in_channels: int,
        table_features: int,
        num_classes: int,
        encoder: Callable[[int, int], nn.Module],
        embedding: int = 32,
        fusion: Literal["concat", "film"] = "concat",
        image: bool = True,
        table: bool = True,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if not (image or table):
            raise ValueError("FusionNet: image and table are both off; keep at least one branch")
        if table and table_features < 1:
            raise ValueError("FusionNet: the data has no table columns; set table: false or use datamodules.Multimodal")
        self.fusion = fusion if image and table else "single"
        self.image_branch = nn.Sequential(encoder(in_channels, embedding), nn.ReLU()) if image else None
        self.table_branch = (
            nn.Sequential(nn.Linear(table_features, embedding), nn.ReLU(), nn.Linear(embedding, embedding), nn.ReLU())
            if table
            else None
        )
        self.film = nn.Linear(embedding, 2 * embedding) if self.fusion == "film" else None
        width = 2 * embedding if self.fusion == "concat" else embedding
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, num_classes))

    def forward(self, images: Tensor, rows: Tensor) -> Tensor:
        if self.image_branch is None:
            return self.head(self.table_branch(rows))
        features = self.image_branch(images)
        if self.table_branch is None:
            return self.head(features)
        embedded = self.table_branch(rows)
        if self.film is not None:
            scale, shift = self.film(embedded).chunk(2, dim=1)
            return self.head(features * (1 + scale) + shift)
        return self.head(torch.cat([features, embedded], dim=1))
