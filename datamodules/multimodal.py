"""Images (or signals) joined with a table of per-case variables: what a clinical study has, gaps included.

Missing cells are handled explicitly, fitted on the training split only: a numeric column's gaps get the training
median plus a 0/1 "was missing" column; a categorical column's gaps become their own level ``missing``; numbers
are then standardised by the training mean and spread, categories one-hot encoded (a level unseen in training
encodes as all zeros). ``missing: keep`` leaves numeric gaps as NaN instead, for models that take them natively
(scikit-learn's gradient boosting); a network refuses NaN by name.
"""

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.data_root import data_path, resolve_data_root
from datamodules.ecg import MITBIH
from datamodules.loaders import SplitDataModule, seed_augmentations
from datamodules.spec import DataSpec
from datamodules.synthetic import SyntheticLesions
from datamodules.validation import DatasetError, check_case_table, check_split_targets

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TableColumns:
    """Which columns of the table are what.

    Args:
        path: the CSV file, relative to the data root (or absolute); DataModules that generate their table leave it
            out.
        key: the column that names the case each row describes.
        numeric: columns read as numbers (a cell that is not a number is an error).
        categorical: columns read as categories (text).
        label: the outcome column, when the labels come from the table rather than the images' own.
        refuse: columns that must never be inputs (a post-outcome variable, a diagnosis code): naming one as
            numeric or categorical is an error, as are the key and the label.
    """

    path: str | None = None
    key: str = "case"
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    label: str | None = None
    refuse: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        inputs = [*self.numeric, *self.categorical]
        leaking = [c for c in inputs if c in {self.key, self.label, *self.refuse}]
        if leaking:
            raise ValueError(f"data.table: {leaking} cannot be inputs (the key, the label or a refused column)")
        twice = sorted({c for c in inputs if inputs.count(c) > 1})
        if twice:
            raise ValueError(f"data.table: {twice} named more than once among numeric and categorical")


def table_encoder(columns: TableColumns, missing: Literal["impute", "keep"]) -> ColumnTransformer:
    """The encoding of the module docstring as a scikit-learn ``ColumnTransformer``, to be fitted on training rows."""
    numeric = make_pipeline(SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                            StandardScaler()) if missing == "impute" else StandardScaler()  # fmt: skip
    categorical = make_pipeline(
        SimpleImputer(strategy="constant", fill_value="missing", keep_empty_features=True),
        OneHotEncoder(handle_unknown="ignore", sparse_output=False),
    )
    return ColumnTransformer(
        [("numeric", numeric, list(columns.numeric)), ("categorical", categorical, list(columns.categorical))],
        verbose_feature_names_out=False,
    )


class TableRows(Dataset):
    """The items of another dataset, each with its case's encoded table row: ``((input, row), label)``."""

    def __init__(self, items: Dataset, rows: np.ndarray, labels: np.ndarray | None) -> None:
        self.items, self.rows = items, torch.from_numpy(rows.astype(np.float32))
        self.labels = None if labels is None else torch.from_numpy(labels.astype(np.int64))

    def reseed(self, seed: int) -> None:
        seed_augmentations(self.items, seed)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[tuple[Tensor, Tensor], Tensor]:
        item, label = self.items[index][0], self.items[index][-1]
        return (item, self.rows[index]), label if self.labels is None else self.labels[index]


class Multimodal(SplitDataModule):
    """Any medlab classification DataModule (``images``) joined with a table by each item's case key.

    Each item's key comes from its name in ``images`` (``key_pattern``'s first group: MIT-BIH beats are named
    ``record:sample``); items without names are keyed ``<split>/<index>``. An item whose key has no row, a key on
    two rows, a label cell that is empty or unknown: an error naming the table and the key, before any step.
    Batches are ``((inputs, table rows), labels)``; ``spec.table_features`` names the encoded columns.

    Args:
        images: the DataModule of the images or signals (its splits, transforms and labels).
        table: the table's file and columns (``TableColumns``).
        key_pattern: regular expression whose first group is an item's case key.
        missing: ``impute`` (median and a missing-indicator column, fitted on training rows) or ``keep`` (NaN).
        label_names: class names of ``table.label``'s values 0, 1, ... (required with it).
        root: data root for ``table.path`` (default: ``$MEDLAB_DATA``, else ``../shared/data``).
    """

    def __init__(
        self,
        images: SplitDataModule,
        table: TableColumns,
        key_pattern: str = "(.*)",
        missing: Literal["impute", "keep"] = "impute",
        label_names: list[str] | None = None,
        root: str | None = None,
    ) -> None:
        super().__init__()
        if table.label is not None and not label_names:
            raise ValueError("data.label_names: name the classes of the table's label column")
        self.images, self.table, self.missing = images, table, missing
        self.key_pattern, self.label_names, self.root = re.compile(key_pattern), label_names, root
        self.batch_size, self.num_workers = images.batch_size, images.num_workers
        self.feature_names: list[str] = []

    @property
    def source(self) -> str:
        return str(self.table_path) if self.table.path else f"{type(self).__name__}'s table"

    @property
    def table_path(self) -> Path:
        return data_path(self.table.path, self.root)

    def read_table(self) -> pd.DataFrame:
        """The table, one row per case (subclasses generate theirs)."""
        if not self.table_path.is_file():
            raise DatasetError(f"{self.table_path}: no such table (data.table.path)")
        return pd.read_csv(self.table_path, dtype={self.table.key: str})

    def keys(self, split: str) -> list[str]:
        names = self.images.item_names.get(split) or [f"{split}/{i}" for i in range(self.images.split_size(split))]
        keys = []
        for name in names:
            found = self.key_pattern.search(str(name))
            if found is None:
                raise DatasetError(f"data.key_pattern {self.key_pattern.pattern!r} does not match the item {name!r}")
            keys.append(found.group(1) if found.groups() else found.group(0))
        return keys

    def checked_table(self) -> pd.DataFrame:
        columns = [*self.table.numeric, *self.table.categorical, *filter(None, [self.table.label])]
        frame = check_case_table(self.read_table(), self.source, self.table.key, columns)
        for column in self.table.numeric:
            values = pd.to_numeric(frame[column], errors="coerce")
            bad = frame[column][values.isna() & frame[column].notna()]
            if len(bad):
                raise DatasetError(f"{self.source}: column {column!r} is numeric, but holds {bad.iloc[0]!r}")
            frame[column] = values.astype(float)
        for column in self.table.categorical:  # text, gaps as NaN (what the imputer looks for; None is not)
            frame[column] = frame[column].map(lambda v: np.nan if pd.isna(v) else str(v)).astype(object)
        return frame.set_index(self.table.key)

    def setup(self, stage: str | None = None) -> None:
        """Sets up ``images`` for every split, fits the encoding on the training rows, joins every split."""
        if all(split in self.datasets for split in SPLITS):
            return
        self.images.setup(None)
        frame = self.checked_table()
        rows = {}
        for split in SPLITS:
            keys = self.keys(split)
            unknown = sorted(set(keys) - set(frame.index))
            if unknown:
                raise DatasetError(
                    f"{self.source}: no row for the {split} cases {unknown[:5]} (key {self.table.key!r})"
                )
            rows[split] = frame.loc[keys]
        encoder = table_encoder(self.table, self.missing).fit(rows["train"])
        self.feature_names = [str(name) for name in encoder.get_feature_names_out()]
        for split in SPLITS:
            labels = self.table_labels(rows[split], split) if self.table.label else None
            self.datasets[split] = TableRows(self.images.datasets[split], encoder.transform(rows[split]), labels)
            self.item_names[split] = self.images.item_names.get(split) or list(rows[split].index)

    def table_labels(self, rows: pd.DataFrame, split: str) -> np.ndarray:
        """The label column as class indices: a class name of ``label_names`` or its index; anything else (an empty
        cell, another value) is an error naming the case."""
        raw = rows[self.table.label]
        named = raw.astype(str).map({name: float(i) for i, name in enumerate(self.label_names)})
        values = named.where(named.notna(), pd.to_numeric(raw, errors="coerce"))
        bad = values.isna() | (values % 1 != 0) | (values < 0) | (values >= len(self.label_names))
        if bad.any():
            case = values.index[bad.to_numpy()][0]
            expected = f"one of {self.label_names} or 0..{len(self.label_names) - 1}"
            raise DatasetError(
                f"{self.source}: the {split} case {case!r} has {self.table.label!r} {raw[case]!r}; expected {expected}"
            )
        labels = values.to_numpy(dtype=np.int64)
        check_split_targets(labels, f"{self.source} column {self.table.label!r}", split, self.task,
                            len(self.label_names), self.label_names)  # fmt: skip
        return labels

    @property
    def task(self) -> str:
        if self.table.label is None:
            return self.images.spec.task
        return "binary" if len(self.label_names) == 2 else "multiclass"

    @property
    def spec(self) -> DataSpec:
        """The images' spec with the table's encoded columns (reads the table and the training split)."""
        self.setup()
        spec = self.images.spec
        if self.table.label is not None:
            names = list(self.label_names)
            spec = replace(spec, task=self.task, num_outputs=len(names), class_names=names, class_weights=None)
        return replace(spec, table_features=self.feature_names)

    @property
    def preprocessing(self) -> dict[str, Any]:
        return {**self.images.preprocessing, "table": f"{self.missing}: {self.feature_names}"}


def lesion_table(lesion: np.ndarray, seed: int, missing_cells: float = 0.0) -> pd.DataFrame:
    """A table of four variables per scan and an outcome that depends on the scan and the table alike.

    ``age`` ~ U(30, 85), ``marker`` ~ N(0, 1), ``sex`` F/M and ``smoker`` yes/no at random, then a risk
    ``r = 1.5 (2 lesion - 1) + 0.06 (age - 57.5) + 1.2 marker + 0.8 smoker + N(0, 0.5)``; ``outcome = r > 0``. The
    lesion (visible only in the scan) and age, marker and smoking (only in the table) carry comparable weight, so
    neither modality alone predicts the outcome well; ``sex`` is noise. ``missing_cells`` of the four variables'
    cells are emptied at random (after the outcome is drawn, so gaps are uninformative).
    """
    rng = np.random.default_rng(seed)
    count = len(lesion)
    age = rng.uniform(30, 85, count)
    marker = rng.normal(0, 1, count)
    smoker = rng.random(count) < 0.4
    sex = np.where(rng.random(count) < 0.5, "F", "M")
    risk = 1.5 * (2 * lesion - 1) + 0.06 * (age - 57.5) + 1.2 * marker + 0.8 * smoker + rng.normal(0, 0.5, count)
    frame = pd.DataFrame({"age": age.round(1), "marker": marker.round(3), "sex": sex,
                          "smoker": np.where(smoker, "yes", "no"), "outcome": (risk > 0).astype(int)})  # fmt: skip
    if missing_cells > 0:
        for column in ("age", "marker", "sex", "smoker"):
            frame[column] = frame[column].astype(object).where(rng.random(count) >= missing_cells, None)
    return frame


class SyntheticLesionRecords(Multimodal):
    """The synthetic lesion scans (``images``: ``SyntheticLesions``) with a generated table (``lesion_table``) of age,
    sex, a lab marker and smoking, and an outcome that needs both: the multimodal set whose answer is known.

    Args:
        images: the scans (``datamodules.SyntheticLesions``).
        table_seed: seed of the table's generator (each split gets its own stream).
        missing_cells: fraction of the table's cells emptied at random, in every split.
        missing: ``impute`` or ``keep`` (``Multimodal``).
    """

    def __init__(
        self,
        images: SyntheticLesions,
        table_seed: int = 0,
        missing_cells: float = 0.0,
        missing: Literal["impute", "keep"] = "impute",
    ) -> None:
        columns = TableColumns(key="case", numeric=["age", "marker"], categorical=["sex", "smoker"], label="outcome")
        super().__init__(images, columns, missing=missing, label_names=["good", "poor"])
        if not 0 <= missing_cells < 1:
            raise ValueError(f"data.missing_cells: expected a fraction in [0, 1), got {missing_cells}")
        self.table_seed, self.missing_cells = table_seed, missing_cells

    def read_table(self) -> pd.DataFrame:
        parts = []
        for index, split in enumerate(SPLITS):
            lesion = self.images.arrays[split][1]
            part = lesion_table(lesion, self.table_seed * 3 + index, self.missing_cells)
            part.insert(0, "case", [f"{split}/{i}" for i in range(len(lesion))])
            parts.append(part)
        return pd.concat(parts, ignore_index=True)


def mitbih_demographics(folder: Path, records: list[str]) -> pd.DataFrame:
    """Each record's age and sex from the first comment of its ``.hea`` header (``# 69 M 1085 1629 x1``); an age
    of ``?`` or a sex other than M/F is a missing cell."""
    rows = []
    for record in records:
        header = folder / f"{record}.hea"
        comments = [line[1:].split() for line in header.read_text().splitlines() if line.startswith("#")]
        if not comments or len(comments[0]) < 2:
            raise DatasetError(f"{header}: no '# <age> <sex> ...' comment line")
        age, sex = comments[0][:2]
        rows.append({"record": record, "age": float(age) if age.isdigit() else np.nan,
                     "sex": sex if sex in ("M", "F") else np.nan})  # fmt: skip
    return pd.DataFrame(rows)


class MITBIHDemographics(Multimodal):
    """MIT-BIH beats (``images``: ``MITBIH``) with their patient's age and sex from the record headers: the one real
    pairing of signals and per-case variables in the shared data. Every beat of a record shares its row.

    Args:
        images: the beats (``datamodules.MITBIH``).
        missing: ``impute`` or ``keep`` (``Multimodal``).
    """

    def __init__(self, images: MITBIH, missing: Literal["impute", "keep"] = "impute") -> None:
        columns = TableColumns(key="record", numeric=["age"], categorical=["sex"])
        super().__init__(images, columns, key_pattern="^([^:]+):", missing=missing, root=images.root)

    def read_table(self) -> pd.DataFrame:
        records = [record for split in SPLITS for record in self.images.records[split]]
        return mitbih_demographics(resolve_data_root(self.root) / self.images.folder, records)
