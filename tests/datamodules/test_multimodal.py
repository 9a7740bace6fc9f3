import numpy as np
import pandas as pd
import PIL.Image
import pytest
import torch

from datamodules import Multimodal, SyntheticLesionRecords, SyntheticLesions, TableColumns
from datamodules.ecg import MITBIH
from datamodules.multimodal import MITBIHDemographics, lesion_table
from datamodules.synthetic import make_lesion_scans
from datamodules.validation import DatasetError
from research.models import FusionNet, LeNet
from research.tasks import FusionClassifier
from tests.conftest import read_item_results

SIZES = {"num_train": 40, "num_val": 20, "num_test": 20}


def lesions() -> SyntheticLesions:
    return SyntheticLesions(image_size=32, batch_size=16, **SIZES)


def write_table(path, frame: pd.DataFrame) -> str:
    frame.to_csv(path, index=False)
    return str(path)


def test_missing_cells_are_imputed_from_training_rows_with_indicators_and_a_missing_level(tmp_path) -> None:
    keys = {split: [f"{split}/{i}" for i in range(n)] for split, n in {"train": 40, "val": 20, "test": 20}.items()}
    frame = pd.DataFrame({"case": sum(keys.values(), []), "age": np.nan, "sex": None})
    frame.loc[:39, "age"] = np.r_[np.full(20, 30.0), np.full(20, 50.0)]  # training median 40
    frame.loc[:39, "sex"] = ["F", "M"] * 20
    frame.loc[[0, 20], ["age", "sex"]] = [np.nan, None]  # gaps in training too
    frame.loc[40:, "age"] = 1000.0  # other splits far off: must not move the encoding
    frame.loc[45, "age"], frame.loc[46, "sex"] = np.nan, "X"  # a gap, and a level unseen in training
    columns = TableColumns(path=write_table(tmp_path / "t.csv", frame), numeric=["age"], categorical=["sex"])
    data = Multimodal(lesions(), columns)
    spec = data.spec
    assert spec.table_features == ["age", "missingindicator_age", "sex_F", "sex_M", "sex_missing"]
    rows = data.datasets["val"].rows.numpy()
    train_age = np.r_[np.full(19, 30.0), np.full(19, 50.0)]
    filled = np.r_[40.0, 40.0, train_age]  # the two training gaps take the training median
    mean, std = filled.mean(), filled.std()
    assert rows[5, 0] == pytest.approx((40 - mean) / std, abs=1e-4) and rows[5, 1] > 0  # imputed, flagged
    assert rows[0, 0] == pytest.approx((1000 - mean) / std, rel=1e-4)
    assert np.array_equal(rows[6, 2:], np.zeros(3))  # unseen level: no column set
    assert data.datasets["train"].rows.numpy()[0, 4] == 1  # a training gap is its own level
    assert np.isfinite(rows).all()
    (image, row), label = data.datasets["val"][0]
    assert image.shape == (1, 32, 32) and row.shape == (5,) and label in (0, 1)


def test_leaking_or_unknown_columns_and_missing_keys_are_refused_by_name(tmp_path) -> None:
    with pytest.raises(ValueError, match="\\['outcome'\\] cannot be inputs"):
        TableColumns(numeric=["age", "outcome"], label="outcome")
    with pytest.raises(ValueError, match="\\['diagnosis'\\] cannot be inputs"):
        TableColumns(categorical=["diagnosis"], refuse=["diagnosis"])
    frame = pd.DataFrame({"case": [f"train/{i}" for i in range(40)], "age": 50})
    path = write_table(tmp_path / "t.csv", frame)
    with pytest.raises(DatasetError, match="t.csv: no row for the val cases \\['val/0'"):
        Multimodal(lesions(), TableColumns(path=path, numeric=["age"])).setup()
    with pytest.raises(DatasetError, match="t.csv: no column \\['weight'\\]"):
        Multimodal(lesions(), TableColumns(path=path, numeric=["weight"])).setup()
    keys = [f"{split}/{i}" for split, n in {"train": 40, "val": 20, "test": 20}.items() for i in range(n)]
    labelled = pd.DataFrame({"case": keys, "age": 50, "outcome": ["poor", "good", 1, 0] * 19 + ["good", 0, 0, 2]})
    path = write_table(tmp_path / "labels.csv", labelled)
    outcome = TableColumns(path=path, numeric=["age"], label="outcome")
    with pytest.raises(DatasetError, match="labels.csv: the test case 'test/19' has 'outcome' '2'; expected one of"):
        Multimodal(lesions(), outcome, label_names=["good", "poor"]).setup()


def test_planted_missing_cells_never_reach_a_loss() -> None:
    data = SyntheticLesionRecords(lesions(), missing_cells=0.3)
    data.setup()
    raw = data.read_table()
    assert 0.2 < raw[["age", "marker", "sex", "smoker"]].isna().to_numpy().mean() < 0.4  # planted in every split
    batch = next(iter(torch.utils.data.DataLoader(data.datasets["train"], batch_size=16)))
    assert torch.isfinite(batch[0][1]).all()
    net = lambda c, t, k: FusionNet(c, t, k, encoder=lambda ci, co: LeNet(ci, co, input_size=32))  # noqa: E731
    model = FusionClassifier(net, data=data.spec.as_dict())
    assert torch.isfinite(model._shared_step(batch)[0])  # the loss

    kept = SyntheticLesionRecords(lesions(), missing_cells=0.3, missing="keep")
    kept.setup()
    batch = next(iter(torch.utils.data.DataLoader(kept.datasets["train"], batch_size=40)))
    assert torch.isnan(batch[0][1]).any()
    model = FusionClassifier(net, data=kept.spec.as_dict())
    with pytest.raises(ValueError, match="table columns \\['age', 'marker'\\] hold NaN"):
        model._shared_step(batch)


def test_outcome_needs_both_modalities() -> None:
    lesion = np.arange(4000) % 2
    frame = lesion_table(lesion, seed=0)
    assert abs(frame["outcome"].mean() - 0.5) < 0.1
    assert 0.6 < (frame["outcome"] == lesion).mean() < 0.85  # the lesion alone is far from the answer


def test_fusion_branches_switch_off() -> None:
    encoder = lambda ci, co: LeNet(ci, co, input_size=32)  # noqa: E731
    images, rows = torch.randn(4, 1, 32, 32), torch.randn(4, 5)
    for options in ({}, {"fusion": "film"}, {"image": False}, {"table": False}):
        assert FusionNet(1, 5, 2, encoder, **options)(images, rows).shape == (4, 2)
    image_only = FusionNet(1, 5, 2, encoder, table=False)
    assert image_only.table_branch is None and image_only.head[1].in_features == 32
    with pytest.raises(ValueError, match="both off"):
        FusionNet(1, 5, 2, encoder, image=False, table=False)


def test_mitbih_beats_join_their_patients_age_and_sex(shared_data) -> None:
    beats = MITBIH(["100", "106"], ["119"], ["208"], root=str(shared_data))
    data = MITBIHDemographics(beats)
    spec = data.spec
    assert spec.table_features == ["age", "sex_F", "sex_M"] and spec.task == "multiclass"
    (beat, row), label = data.datasets["test"][0]
    assert beat.shape[0] == 4 and row[1:].tolist() == [1.0, 0.0]  # 208: 23-year-old woman
    assert len(data.datasets["train"]) == len(beats.datasets["train"])


def test_image_files_listed_in_a_csv_join_their_table_and_run_end_to_end(run_medlab, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MEDLAB_CACHE", str(tmp_path / "cache"))
    images, lesion = make_lesion_scans(80, 32, seed=0)
    (tmp_path / "png").mkdir()
    for i, image in enumerate(images):
        PIL.Image.fromarray(image[..., 0]).save(tmp_path / "png" / f"{i}.png")
    frame = lesion_table(lesion, seed=0, missing_cells=0.2)
    frame.insert(0, "case", [f"p{i:03d}" for i in range(80)])
    frame["image"] = [f"png/{i}.png" for i in range(80)]
    frame["split"] = ["train"] * 40 + ["val"] * 20 + ["test"] * 20
    table = write_table(tmp_path / "cases.csv", frame)
    run_dir = run_medlab(
        "multimodal/lesions_boosting",
        "--data=datamodules.Multimodal", "--data.missing=keep",
        "--data.images=datamodules.ImageList", f"--data.images.init_args.table={table}",
        "--data.images.init_args.class_names=[good, poor]", "--data.images.init_args.label=outcome",
        f"--data.table={{path: {table}, numeric: [age, marker], categorical: [sex, smoker], refuse: [outcome]}}",
        "--model.features.descriptors=[first_order]", "--model.classifiers={gradient_boosting: {max_iter: [50]}}",
    )  # fmt: skip
    groups = [line.split(",")[0] for line in (run_dir / "feature_importance.csv").read_text().splitlines()[1:]]
    columns = ["age", "marker", "sex_F", "sex_M", "sex_missing", "smoker_missing", "smoker_no", "smoker_yes"]
    assert groups == ["first_order", *(f"table/{name}" for name in columns)]  # the PNGs' descriptors, the table
    rows = read_item_results(run_dir)
    assert [row["item"] for row in rows] == [f"p{i:03d}" for i in range(60, 80)]  # named by the table's key
    assert [row["true"] for row in rows] == [["good", "poor"][y] for y in frame["outcome"][60:]]
