from pathlib import Path

import numpy as np
import pytest
import torch
import wfdb

from datamodules.ecg import AAMI, MITBIH, CinC2017, PatientFolds, fill_missing, pick_leads, relative_rr, rr_irregularity
from datamodules.validation import DatasetError


def write_record(folder: Path, name: str, seconds: float = 20, fs: int = 360, nan_at: slice | None = None) -> Path:
    """A WFDB record (format 16, two leads) with an R peak every second, alternately labelled N and V."""
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * fs)) / fs
    lead = 0.1 * np.sin(2 * np.pi * 0.3 * t)
    peaks = np.arange(fs // 2, len(t) - fs // 2, fs) if seconds >= 1 else np.array([len(t) // 2])
    for peak in peaks:
        lead[peak - 5 : peak + 5] += np.hanning(10)
    if nan_at is not None:
        lead[nan_at] = np.nan
    signal = np.stack([lead, 0.5 * lead], axis=1)
    wfdb.wrsamp(name, fs=fs, units=["mV", "mV"], sig_name=["MLII", "V1"], p_signal=signal, fmt=["16", "16"],
                write_dir=str(folder))  # fmt: skip
    symbols = ["N" if i % 2 == 0 else "V" for i in range(len(peaks))]
    wfdb.wrann(name, "atr", peaks, symbol=symbols, write_dir=str(folder))
    return folder / name


def mitbih(root: Path, **kwargs) -> MITBIH:
    return MITBIH(["r1"], ["r2"], ["r3"], folder="ecg", root=str(root), **kwargs)


def write_three(root: Path, **kwargs) -> None:
    for name in ("r1", "r2", "r3"):
        write_record(root / "ecg", name, **kwargs)


def test_aami_mapping_covers_the_five_classes() -> None:
    assert sorted(set(AAMI.values())) == ["F", "N", "Q", "S", "V"]
    assert AAMI["L"] == "N" and AAMI["A"] == "S" and AAMI["E"] == "V" and AAMI["/"] == "Q"


def test_beats_are_cut_around_r_peaks_and_labelled(tmp_path: Path) -> None:
    write_three(tmp_path)
    data = mitbih(tmp_path, rr_features=False)
    data.setup()
    signal, label = data.datasets["train"][0]
    assert signal.shape == (1, 90 + 162) and label.item() == 0  # 0.25 s + 0.45 s at 360 Hz; N
    assert data.datasets["train"].targets.tolist()[:4] == [0, 2, 0, 2]  # N, V alternating
    assert int(signal[0].argmax()) in range(85, 96)  # the R peak sits 0.25 s into the window
    names = data.item_names["train"]  # each beat named by its record and the sample of its R peak
    assert len(names) == len(data.datasets["train"]) and names[0].startswith("r1:")
    record, sample = names[0].split(":")
    assert data.beats(record)[2][0] == int(sample)


def test_rr_features_mark_a_premature_beat_relative_to_the_patients_rhythm() -> None:
    peaks = np.array([0, 100, 200, 300, 350, 500, 600])  # the fifth beat comes early, then a compensatory pause
    rr = relative_rr(peaks, context=2)
    mean = 100.0
    assert rr.shape == (3, 7)
    np.testing.assert_allclose(rr[0], np.array([100, 100, 100, 100, 50, 150, 100]) / mean)  # previous RR
    np.testing.assert_allclose(rr[1], np.array([100, 100, 100, 50, 150, 100, 100]) / mean)  # next RR
    np.testing.assert_allclose(rr[2, 4:], np.array([75, 100, 125]) / mean)  # mean of the last two


def test_rr_irregularity_is_zero_for_a_steady_rhythm_and_grows_with_its_variation() -> None:
    steady = rr_irregularity(np.arange(0, 2000, 100), context=4)
    assert steady.shape == (1, 20) and np.allclose(steady, 0)
    irregular = rr_irregularity(np.cumsum([100, 60, 140, 80, 120, 100, 100, 100, 100, 100]), context=4)
    assert irregular[0, 4] > 0.2 and irregular[0, -1] == 0  # four irregular intervals, then four steady ones


def test_rr_features_are_constant_channels_beside_the_lead(tmp_path: Path) -> None:
    write_three(tmp_path)
    data = mitbih(tmp_path)
    data.setup()
    signal, _ = data.datasets["train"][3]
    assert data.in_channels == 4 and signal.shape == (4, 252)
    torch.testing.assert_close(signal[1:], torch.ones(3, 252))  # one beat a second: every RR equals the mean


def test_two_leads_and_a_subset_of_classes(tmp_path: Path) -> None:
    write_three(tmp_path)
    data = mitbih(tmp_path, leads=[0, 1], classes=["V", "N"])
    data.setup()
    signal, label = data.datasets["val"][0]  # not augmented
    assert data.in_channels == 5 and signal.shape == (5, 252) and label.item() == 1  # N is the second class now
    torch.testing.assert_close(signal[0], signal[1], atol=1e-4, rtol=0)  # the second lead is half the first, z-scored
    assert data.spec.class_names == ["V", "N"] and data.spec.num_outputs == 2
    data = mitbih(tmp_path, leads=[0, 1], template=True)
    data.setup()
    signal, _ = data.datasets["val"][0]
    assert data.in_channels == 7 and signal.shape == (7, 252)
    assert signal[2:4].abs().max() < 0.05 * signal[:2].abs().max()  # every synthetic beat has the median shape
    torch.testing.assert_close(signal[4:], torch.ones(3, 252))  # then the RR channels
    data = mitbih(tmp_path, rr_irregularity=True)
    data.setup()
    assert data.in_channels == 5 and data.datasets["val"][3][0][4].abs().max() < 1e-6  # a steady rhythm
    data = mitbih(tmp_path, classes=["N", "S"])  # V beats left out: only N remains, which validation cannot score
    with pytest.raises(DatasetError, match=r"val split holds only class \['N'\]"):
        data.setup()
    with pytest.raises(DatasetError, match=r"r1: data.leads \[0, 2\] asks for \[2\]; the record has leads"):
        mitbih(tmp_path, leads=[0, 2]).setup()
    with pytest.raises(DatasetError, match=r"r1: data.leads \['V5'\] asks for \['V5'\]; .* \['MLII', 'V1'\]"):
        mitbih(tmp_path, leads=["V5"]).setup()


def test_leads_by_name_find_mlii_where_a_record_holds_it_second(shared_data: Path) -> None:
    folder = shared_data / "ecg" / "mitdb"
    assert wfdb.rdheader(str(folder / "114")).sig_name == ["V5", "MLII"]
    assert pick_leads(["V5", "MLII"], ["MLII", 0], folder / "114") == [1, 0]
    assert pick_leads(["MLII", "V1"], ["MLII", 0], folder / "101") == [0, 1]
    by_name = MITBIH(["114"], ["101"], ["106"], leads=["MLII"], root=str(shared_data))
    by_index = MITBIH(["114"], ["101"], ["106"], leads=[1], root=str(shared_data))
    np.testing.assert_array_equal(by_name.beats("114")[0][0], by_index.beats("114")[0][0])


def test_patient_folds_keep_each_patient_in_one_fold_and_the_refit_trains_on_all(tmp_path: Path) -> None:
    pool = [f"p{i}" for i in range(7)]
    for name in [*pool, "ext"]:
        write_record(tmp_path / "ecg", name)
    tested = []
    for fold in range(3):
        folds = PatientFolds(pool, num_folds=3, fold=fold, seed=1, same_patient={"p6": "p5"})
        data = MITBIH(folds=folds, test_records=["ext"], folder="ecg", root=str(tmp_path))
        data.setup()
        splits = data.run_files["splits.json"]
        assert sorted(splits["train"] + splits["val"] + splits["test"]) == pool
        assert not set(splits["train"]) & set(splits["val"]) and not set(splits["test"]) & set(splits["val"])
        assert any({"p5", "p6"} <= set(part) for part in (splits["train"], splits["val"], splits["test"]))
        assert {name.split(":")[0] for name in data.item_names["test"]} == set(splits["test"])  # not "ext"
        tested += splits["test"]
    assert sorted(tested) == pool  # every patient is tested exactly once over the folds
    refit = MITBIH(folds=PatientFolds(pool, fold=None), test_records=["ext"], folder="ecg", root=str(tmp_path))
    refit.setup()
    assert "val" not in refit.datasets and refit.val_dataloader() == []
    assert refit.run_files["splits.json"]["train"] == pool and refit.run_files["splits.json"]["test"] == ["ext"]
    with pytest.raises(ValueError, match="data.folds splits its pool of records: give no train_records"):
        MITBIH(["p1"], folds=PatientFolds(pool))


def test_a_record_in_two_splits_is_refused() -> None:
    with pytest.raises(ValueError, match="record 100 is in both train and test: split by patient"):
        MITBIH(["100", "101"], ["102"], ["100"])


def test_shared_records_split_by_patient(shared_data: Path) -> None:
    data = MITBIH(["100", "106"], ["119"], ["208"], root=str(shared_data))
    data.setup()
    counts = {split: len(data.datasets[split]) for split in ("train", "val", "test")}
    assert counts["train"] > 3000 and counts["test"] > 2500 and counts["val"] > 1500
    assert torch.isfinite(data.datasets["train"].signals[0]).all()


def test_missing_annotation_file_is_named(tmp_path: Path) -> None:
    write_three(tmp_path)
    (tmp_path / "ecg" / "r2.atr").unlink()
    with pytest.raises(FileNotFoundError, match=r"r2.atr: missing"):
        mitbih(tmp_path).setup()


def test_header_and_signal_that_disagree_are_named(tmp_path: Path) -> None:
    write_three(tmp_path)
    dat = tmp_path / "ecg" / "r1.dat"
    dat.write_bytes(dat.read_bytes()[: dat.stat().st_size // 2])
    with pytest.raises(DatasetError, match=r"ecg/r1"):
        mitbih(tmp_path).setup()


def test_other_sampling_rate_is_refused_or_resampled(tmp_path: Path) -> None:
    write_record(tmp_path / "ecg", "r1", fs=250)
    for name in ("r2", "r3"):
        write_record(tmp_path / "ecg", name)
    with pytest.raises(DatasetError, match=r"r1: sampled at 250 Hz, expected 360 Hz.*data.resample=true"):
        mitbih(tmp_path).setup()
    data = mitbih(tmp_path, resample=True)
    data.setup()
    assert data.datasets["train"][0][0].shape == (4, 252) and len(data.datasets["train"]) == 19  # every beat


def test_record_shorter_than_a_beat_window_is_named(tmp_path: Path) -> None:
    write_three(tmp_path)
    write_record(tmp_path / "ecg", "r3", seconds=0.6)
    with pytest.raises(DatasetError, match=r"r3: 216 samples, shorter than one beat window \(252\)"):
        mitbih(tmp_path).setup()


def test_nan_samples_are_interpolated(tmp_path: Path) -> None:
    write_three(tmp_path, nan_at=slice(1000, 1010))
    data = mitbih(tmp_path)
    data.setup()
    assert all(torch.isfinite(signal).all() for signal in data.datasets["train"].signals)


def test_fill_missing_draws_a_straight_line_and_refuses_an_empty_lead() -> None:
    assert fill_missing(np.array([0.0, np.nan, np.nan, 3.0]), "x").tolist() == [0.0, 1.0, 2.0, 3.0]
    with pytest.raises(DatasetError, match="all NaN"):
        fill_missing(np.full(4, np.nan), "x")


def test_cinc2017_folds_are_stratified_disjoint_and_cover_every_record(shared_data: Path) -> None:
    labels = CinC2017(root=str(shared_data)).labelled_records()
    assert len(labels) == 400 and sorted(np.bincount(list(labels.values()))) == [100, 100, 100, 100]
    tests = []
    for fold in range(5):
        split = CinC2017(root=str(shared_data), fold=fold).split(labels)
        assert not set(split["train"]) & set(split["val"]) and not set(split["val"]) & set(split["test"])
        assert len(split["train"]) + len(split["val"]) + len(split["test"]) == 400
        assert np.bincount([labels[r] for r in split["test"]]).tolist() == [20, 20, 20, 20]
        tests += split["test"]
    assert sorted(tests) == sorted(labels)
    assert CinC2017(root=str(shared_data), fold=2).split(labels) == CinC2017(root=str(shared_data), fold=2).split(
        labels
    )


def test_cinc2017_reads_variable_length_records_and_refuses_other_rates(tmp_path: Path) -> None:
    folder = tmp_path / "ecg" / "cinc"
    rows = []
    for i in range(12):
        name = f"A{i:05d}"
        seconds = 10 + i
        t = np.arange(seconds * 300) / 300
        folder.mkdir(parents=True, exist_ok=True)
        wfdb.wrsamp(name, fs=300, units=["mV"], sig_name=["ECG"], p_signal=np.sin(2 * np.pi * t)[:, None],
                    fmt=["16"], write_dir=str(folder))  # fmt: skip
        rows.append(f"{name},{'NAO~'[i % 4]}")
    (folder / "REFERENCE.csv").write_text("\n".join(rows) + "\n")
    data = CinC2017(folder="ecg/cinc", root=str(tmp_path), num_folds=3)
    data.setup()
    lengths = sorted(signal.shape[-1] for signal in data.datasets["train"].signals)
    assert lengths[0] < lengths[-1] and all(length % 100 == 0 for length in lengths)  # 300 Hz decimated to 100 Hz
    with pytest.raises(DatasetError, match=r"A00000: sampled at 300 Hz, expected 250 Hz"):
        CinC2017(folder="ecg/cinc", root=str(tmp_path), num_folds=3, sampling_rate=250).setup()
    (folder / "REFERENCE.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"REFERENCE.csv: missing"):
        CinC2017(folder="ecg/cinc", root=str(tmp_path), num_folds=3).setup()


def test_cinc2017_invalid_records_are_dropped_only_when_asked_and_counted(tmp_path: Path) -> None:
    folder = tmp_path / "ecg" / "cinc"
    folder.mkdir(parents=True)
    rows = []
    for i in range(14):
        t = np.arange(3000) / 300
        wfdb.wrsamp(f"A{i:05d}", fs=300, units=["mV"], sig_name=["ECG"], p_signal=np.sin(2 * np.pi * t)[:, None],
                    fmt=["16"], write_dir=str(folder))  # fmt: skip
        rows.append(f"A{i:05d},{'NAO~X'[i] if i < 5 else 'NAO~'[i % 4]}")
    (folder / "REFERENCE.csv").write_text("data_source,class\n" + "\n".join(rows[:-1]) + "\n")  # A00013 unlabelled
    with pytest.raises(DatasetError, match=r"ecg/cinc: no label: 1 \(A00013\); unknown label: 1 \(A00004 \('X'\)\)"):
        CinC2017(folder="ecg/cinc", root=str(tmp_path), num_folds=3).setup()
    data = CinC2017(folder="ecg/cinc", root=str(tmp_path), num_folds=3, skip_invalid_records=True)
    data.setup()
    report = data.run_files["data_report.json"]
    assert report["kept"] == 12 and report["dropped"]["unknown label"]["count"] == 1
    assert report["dropped"]["no label"]["records"] == ["A00013"]
    assert sum(len(data.datasets[s]) for s in ("train", "val", "test")) == 12
