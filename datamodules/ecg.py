"""ECG records in WFDB format (read with the ``wfdb`` package): MIT-BIH beats in the five AAMI classes, split
by record (patient), never by beat."""

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import wfdb
from scipy import signal as scipy_signal
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from torch import Tensor
from wfdb import processing

from datamodules.data_root import resolve_data_root
from datamodules.inputs import Prediction, expand, note_unreadable
from datamodules.sequences import SequenceDataModule, SequenceDataset
from datamodules.validation import DatasetError, check_split_targets

# ANSI/AAMI EC57 beat classes from MIT-BIH annotation symbols; other symbols are not beats.
AAMI_CLASSES = ["N", "S", "V", "F", "Q"]
AAMI = {
    **dict.fromkeys("NLRej", "N"),
    **dict.fromkeys("AaJS", "S"),
    **dict.fromkeys("VE", "V"),
    "F": "F",
    **dict.fromkeys("/fQ", "Q"),
}


def fill_missing(samples: np.ndarray, source: str) -> np.ndarray:
    """Linear interpolation over NaN samples (a lead dropping out for a moment); an all-NaN lead is an error.

    Interpolation, not masking: the filters and the RNN need a continuous signal, and short gaps in an ECG
    are well bridged by a straight line.
    """
    missing = np.isnan(samples)
    if not missing.any():
        return samples
    if missing.all():
        raise DatasetError(f"{source}: the lead has no samples (all NaN)")
    steps = np.arange(len(samples))
    filled = samples.copy()
    filled[missing] = np.interp(steps[missing], steps[~missing], samples[~missing])
    return filled


def pick_leads(names: list[str], leads: list[int | str], path: Path) -> list[int]:
    """The channels of ``leads``: a name picks the channel of that name (MIT-BIH record 114 holds MLII second), an
    index picks among the channels no name picked, in order (``[MLII, 0]``: MLII, then the other lead)."""
    named = [lead for lead in leads if isinstance(lead, str)]
    absent = [name for name in named if name not in names]
    others = [i for i, name in enumerate(names) if name not in named]
    beyond = [lead for lead in leads if isinstance(lead, int) and lead >= len(others)]
    if absent or beyond:
        raise DatasetError(f"{path}: data.leads {leads} asks for {absent or beyond}; the record has leads {names}")
    return [names.index(lead) if isinstance(lead, str) else others[lead] for lead in leads]


def read_record(
    path: Path, leads: list[int | str], sampling_rate: int, resample: bool, annotated: bool = True
) -> tuple[np.ndarray, wfdb.Annotation]:
    """The ``leads`` of a WFDB record (in mV, (leads, samples)) and its beat annotations, at ``sampling_rate``. A
    record without ``.atr`` (``annotated=False``) gets its R peaks from wfdb's XQRS detector on its first lead, as
    beats of unknown class (symbol ``?``)."""
    for suffix in (".hea", ".atr") if annotated else (".hea",):
        if not path.with_suffix(suffix).is_file():
            raise FileNotFoundError(f"{path.with_suffix(suffix)}: missing (a MIT-BIH record needs .hea, .dat, .atr)")
    try:
        header = wfdb.rdheader(str(path))
        record = wfdb.rdrecord(str(path), channels=pick_leads(header.sig_name, leads, path))
        if annotated:
            annotation = wfdb.rdann(str(path), "atr")
        else:
            peaks = processing.xqrs_detect(record.p_signal[:, 0], fs=record.fs, verbose=False)
            annotation = wfdb.Annotation(path.name, "atr", peaks, ["?"] * len(peaks), fs=record.fs)
    except DatasetError:
        raise
    except Exception as error:  # wfdb raises ValueError/IndexError/OSError for broken headers and signals
        raise DatasetError(f"{path}: the record cannot be read ({type(error).__name__}: {error})") from error
    signal = record.p_signal
    if signal is None or len(signal) != record.sig_len:
        got = 0 if signal is None else len(signal)
        raise DatasetError(f"{path}: the header promises {record.sig_len} samples, the signal file holds {got}")
    leads_read = [fill_missing(lead.astype(np.float64), str(path)) for lead in signal.T]
    if record.fs != sampling_rate:
        if not resample:
            raise DatasetError(
                f"{path}: sampled at {record.fs} Hz, expected {sampling_rate} Hz (data.sampling_rate); "
                "set data.resample=true to resample"
            )
        resampled = [processing.resample_singlechan(lead, annotation, record.fs, sampling_rate) for lead in leads_read]
        leads_read, annotation = [lead for lead, _ in resampled], resampled[0][1]
    return np.stack(leads_read), annotation


def is_record(path: Path) -> bool:
    """A WFDB record named by its header file or by its path without suffix."""
    return path.suffix == ".hea" and path.is_file() or path.with_name(path.name + ".hea").is_file()


def bandpass(samples: np.ndarray, sampling_rate: int, low: float = 0.5, high: float = 40.0) -> np.ndarray:
    """Zero-phase Butterworth band-pass: removes baseline wander (< 0.5 Hz) and mains/muscle noise (> 40 Hz)."""
    b, a = scipy_signal.butter(3, [low, high], btype="bandpass", fs=sampling_rate)
    return scipy_signal.filtfilt(b, a, samples)


def relative_rr(peaks: np.ndarray, context: int) -> np.ndarray:
    """(3, beats): previous RR, next RR and the mean of the last ``context`` RRs, over the record's mean RR.

    The first and last beats borrow their neighbour's interval.
    """
    if len(peaks) < 2:
        return np.ones((3, len(peaks)))
    intervals = np.diff(peaks).astype(np.float64)
    previous = np.concatenate([intervals[:1], intervals])
    following = np.concatenate([intervals, intervals[-1:]])
    window = np.ones(context) / context
    local = np.convolve(np.pad(previous, (context - 1, 0), mode="edge"), window, mode="valid")
    return np.stack([previous, following, local]) / intervals.mean()


def rr_irregularity(peaks: np.ndarray, context: int) -> np.ndarray:
    """(1, beats): the coefficient of variation (std over mean) of the last ``context`` RR intervals of each beat."""
    if len(peaks) < 2:
        return np.zeros((1, len(peaks)))
    intervals = np.diff(peaks).astype(np.float64)
    previous = np.pad(np.concatenate([intervals[:1], intervals]), (context - 1, 0), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(previous, context)
    return (windows.std(axis=1) / windows.mean(axis=1))[None]


class BeatAugment:
    """Training-time jitter of the signal channels (the first ``leads``; never the RR channels): amplitude scaling,
    a baseline offset and white noise per lead, the variation between patients and electrodes that a model should not
    learn as morphology. Draws from torch's RNG, which Lightning seeds in every worker."""

    def __init__(self, leads: int = 1, scale: float = 0.15, offset: float = 0.1, noise: float = 0.05) -> None:
        self.leads, self.scale, self.offset, self.noise = leads, scale, offset, noise

    def __call__(self, beat: Tensor) -> Tensor:
        beat = beat.clone()
        gain = 1 + self.scale * (2 * torch.rand(self.leads, 1) - 1)
        offset = self.offset * (2 * torch.rand(self.leads, 1) - 1)
        noise = self.noise * torch.randn(self.leads, beat.shape[-1])
        beat[: self.leads] = beat[: self.leads] * gain + offset + noise
        return beat


class RecordAugment:
    """Training-time variation of a whole record: a random window of ``crop`` samples (a shorter record stays whole),
    amplitude scaling and white noise. Cropping also makes an epoch cheaper; evaluation reads whole records."""

    def __init__(self, crop: int | None, scale: float = 0.2, noise: float = 0.05) -> None:
        self.crop, self.scale, self.noise = crop, scale, noise

    def __call__(self, record: Tensor) -> Tensor:
        if self.crop is not None and record.shape[-1] > self.crop:
            start = int(torch.randint(record.shape[-1] - self.crop + 1, ()))
            record = record[..., start : start + self.crop]
        gain = 1 + self.scale * (2 * torch.rand(()) - 1)
        return record * gain + self.noise * torch.randn(record.shape)


@dataclass
class PatientFolds:
    """Patient-wise k-fold cross-validation over a pool of records: records of one patient always fall in one fold.

    Folds come from scikit-learn's ``StratifiedGroupKFold`` over the pool's beats, grouped by patient, so each fold
    holds about its share of every class (the rare classes sit in a few patients; a plain k-fold over records could put
    all of one in a single fold). Fold ``fold`` is the test set, the next fold validation (it picks the checkpoint),
    the rest training. ``fold: null`` is the refit: every record of the pool trains, for the fixed number of epochs
    cross-validation chose, and the test records are the DataModule's ``test_records`` (for MIT-BIH, DS2).

    Args:
        records: the pool (for the inter-patient protocol, DS1).
        num_folds: folds of the cross-validation.
        fold: the test fold (the next one validates); ``null``: train on the whole pool, without validation.
        seed: seed of the fold assignment.
        same_patient: records that come from one patient, mapped to one name of that patient (MIT-BIH: 202 is 201).
    """

    records: list[str]
    num_folds: int = 5
    fold: int | None = 0
    seed: int = 0
    same_patient: dict[str, str] = field(default_factory=lambda: {"202": "201"})


class MITBIH(SequenceDataModule):
    """Heartbeats cut around the annotated R peaks of MIT-BIH records, labelled with the AAMI classes.

    Records (patients) are split explicitly (``train_records``, ``val_records``, ``test_records``), or into
    patient-wise cross-validation folds of a pool of records (``folds``: ``PatientFolds``, written to ``splits.json``),
    never by beat. ``filter: bandpass`` and ``normalize: record`` (z-score of each lead over the whole record) are the
    named transforms. Beats whose window runs off the record are skipped; a record shorter than one window is an
    error. ``classes`` keeps beats of some AAMI classes only (the inter-patient protocol usually leaves out Q: 8 beats
    in DS1, 7 in DS2).

    ``rr_features: true`` appends three constant channels to each beat: the previous and next RR intervals and
    the mean of the last ``rr_context`` intervals, each divided by the record's mean RR. Morphology alone barely
    separates supraventricular (S) beats from normal ones across patients; prematurity does (de Chazal et al.
    2004), and dividing by the patient's own rhythm keeps it patient-independent. ``augment: true`` jitters the
    training beats' amplitude, baseline and noise (``BeatAugment``).

    Args:
        train_records: record names (patients) of the training split.
        val_records: records of the validation split.
        test_records: records of the test split; a record in two splits is an error. With ``folds``, the external
            test records (DS2), which the refit (``folds.fold: null``) tests; a cross-validation run tests its fold.
        folds: patient-wise cross-validation over a pool of records instead of ``train_records``/``val_records``.
        folder: the WFDB folder, relative to the data root.
        root: data root folder (default: ``$MEDLAB_DATA``, else ``../shared/data`` beside the checkout).
        leads: the leads to use, each a channel of the beat: by name (``MLII``) or by index among the leads no name
            picked (``[MLII, 0]``: MLII, then the record's other lead, V1, V2, V4 or V5). MIT-BIH holds MLII first
            except in record 114, so ``[0]`` reads V5 there.
        classes: the AAMI classes kept (beats of the others are left out), in the order of the outputs.
        sampling_rate: expected rate in Hz; other rates are an error unless ``resample``.
        resample: resample records of another rate with ``wfdb.processing``.
        before: seconds of signal before each R peak.
        after: seconds after it.
        filter: ``bandpass`` (0.5-40 Hz) or ``none``.
        normalize: ``record`` (z-score of each lead over the record) or ``none``.
        rr_features: append the previous, next and local mean RR interval (over the record's mean) as channels.
        rr_context: beats in the local mean RR.
        rr_irregularity: append one more RR channel, the coefficient of variation of the last ``rr_context`` RRs: high
            in atrial fibrillation, whose irregular normal beats otherwise look premature (S).
        template: append each lead minus the record's median beat, as channels after the leads: how a beat departs
            from the patient's dominant (mostly normal) morphology, a label-free per-patient reference as the RR
            intervals' division by the patient's mean RR is.
        augment: amplitude, baseline and noise jitter of the training beats.
        prediction: the WFDB records ``medlab predict`` reads instead of the test records (``paths``: records as
            ``folder/208``, their ``.hea`` files, or folders of records).
        **loader_kwargs: ``batch_size``, ``num_workers``, ``balanced``.
    """

    task = "multiclass"

    def __init__(
        self,
        train_records: list[str] | None = None,
        val_records: list[str] | None = None,
        test_records: list[str] | None = None,
        folds: PatientFolds | None = None,
        folder: str = "ecg/mitdb",
        root: str | None = None,
        leads: list[int | str] = [0],  # noqa: B006 (jsonargparse reads the default; never mutated)
        classes: list[str] = AAMI_CLASSES,  # noqa: B006
        sampling_rate: int = 360,
        resample: bool = False,
        before: float = 0.25,
        after: float = 0.45,
        filter: Literal["bandpass", "none"] = "bandpass",
        normalize: Literal["record", "none"] = "record",
        rr_features: bool = True,
        rr_context: int = 10,
        rr_irregularity: bool = False,
        template: bool = False,
        augment: bool = True,
        prediction: Prediction = Prediction(),
        **loader_kwargs: Any,
    ) -> None:
        super().__init__(**loader_kwargs)
        self.prediction, self.folds, self.template = prediction, folds, template
        unknown = [c for c in classes if c not in AAMI_CLASSES]
        if unknown or len(set(classes)) < 2:
            raise ValueError(f"data.classes {classes}: expected two or more distinct AAMI classes of {AAMI_CLASSES}")
        if not leads or any(isinstance(lead, int) and lead < 0 for lead in leads):
            raise ValueError(f"data.leads {leads}: expected one or more lead names or indices (0, 1, ...)")
        if folds is not None:
            if train_records or val_records:
                raise ValueError("data.folds splits its pool of records: give no train_records or val_records")
            if folds.fold is not None and not 0 <= folds.fold < folds.num_folds:
                raise ValueError(f"data.folds.fold must be null or in [0, {folds.num_folds - 1}], got {folds.fold}")
        splits = {"train": train_records or [], "val": val_records or [], "test": test_records or []}
        seen: dict[str, str] = {}
        for split, records in {**splits, "pool": folds.records if folds else []}.items():
            for record in records:
                if record in seen:
                    raise ValueError(f"record {record} is in both {seen[record]} and {split}: split by patient")
                seen[record] = split
        self.records = splits
        self.folder, self.root, self.leads = folder, root, list(leads)
        self.class_names, self.num_classes = list(classes), len(classes)
        self.sampling_rate, self.resample = sampling_rate, resample
        self.window = (round(before * sampling_rate), round(after * sampling_rate))
        self.filter, self.normalize = filter, normalize
        self.rr_features, self.rr_context, self.rr_irregularity = rr_features, rr_context, rr_irregularity
        signals = len(self.leads) * (2 if template else 1)
        self.augment = BeatAugment(signals) if augment else None
        self.in_channels = signals + (3 if rr_features else 0) + (1 if rr_irregularity else 0)

    @property
    def preprocessing(self) -> dict[str, Any]:
        before, after = self.window
        rr = f"previous RR, next RR and the mean of the last {self.rr_context} RRs over the record's mean RR"
        leads = f"leads {self.leads}"
        return {"input": f"{leads} at {self.sampling_rate} Hz", "filter": f"{self.filter} (0.5-40 Hz)",
                "normalize": f"{self.normalize} (z-score of each lead over the whole record)",
                "window": f"{before} samples before and {after} after each R peak",
                "channels": ", then ".join([leads] + ["each lead minus the record's median beat"] * self.template
                                           + [f"{rr}, each held constant"] * self.rr_features
                                           + ["the coefficient of variation of the last RRs"] * self.rr_irregularity),
                "classes": self.class_names,
                "layout": f"float32 (batch, {self.in_channels}, {before + after})"}  # fmt: skip

    def beats(self, record: str) -> tuple[list[np.ndarray], list[int], list[int]]:
        """The beat windows of a record of the data folder, their classes and the samples of their R peaks."""
        return self.beats_at(resolve_data_root(self.root) / self.folder / record)

    def beats_at(self, path: Path, annotated: bool = True) -> tuple[list[np.ndarray], list[int], list[int]]:
        """The beats of the record at ``path`` (of the kept ``classes``); without annotations (``annotated=False``),
        the beats XQRS finds, of class -1 (unknown)."""
        samples, annotation = read_record(path, self.leads, self.sampling_rate, self.resample, annotated)
        before, after = self.window
        if samples.shape[1] < before + after:
            raise DatasetError(f"{path}: {samples.shape[1]} samples, shorter than one beat window ({before + after})")
        if self.filter == "bandpass":
            samples = bandpass(samples, self.sampling_rate)
        if self.normalize == "record":
            samples = (samples - samples.mean(axis=1, keepdims=True)) / (samples.std(axis=1, keepdims=True) + 1e-8)
        is_beat = np.isin(annotation.symbol, [*AAMI, "?"])
        peaks, symbols = annotation.sample[is_beat], np.asarray(annotation.symbol)[is_beat]
        parts = [relative_rr(peaks, self.rr_context)] * self.rr_features
        parts += [rr_irregularity(peaks, self.rr_context)] * self.rr_irregularity
        rr = np.concatenate(parts) if parts else None
        fits = (peaks >= before) & (peaks < samples.shape[1] - after)  # the beat's window lies within the record
        if self.template and fits.any():  # the record's median beat: its dominant morphology, from no label
            template = np.median(np.stack([samples[:, p - before : p + after] for p in peaks[fits]]), axis=0)
        windows, labels, kept = [], [], []
        for i, (peak, symbol) in enumerate(zip(peaks, symbols, strict=True)):
            if symbol in AAMI and AAMI[symbol] not in self.class_names:
                continue
            if fits[i]:
                beat = samples[:, peak - before : peak + after]
                if self.template:
                    beat = np.concatenate([beat, beat - template])
                if rr is not None:
                    beat = np.concatenate([beat, np.repeat(rr[:, i : i + 1], beat.shape[1], axis=1)])
                windows.append(beat.astype(np.float32))
                labels.append(self.class_names.index(AAMI[symbol]) if symbol in AAMI else -1)
                kept.append(int(peak))
        return windows, labels, kept

    def split_folds(self, beats: dict[str, tuple[list, list, list]]) -> dict[str, list[str]]:
        """The pool's records in train/val/test by ``folds`` (``PatientFolds``): the refit trains on all of them."""
        folds = self.folds
        if folds.fold is None:
            return {"train": list(folds.records), "test": self.records["test"]}
        labels = np.concatenate([np.array(beats[r][1], dtype=np.int64) for r in folds.records])
        patients = np.concatenate([[folds.same_patient.get(r, r)] * len(beats[r][1]) for r in folds.records])
        records = np.concatenate([[r] * len(beats[r][1]) for r in folds.records])
        if len(set(patients)) < folds.num_folds:
            raise ValueError(
                f"data.folds: {len(set(patients))} patients in the pool, fewer than {folds.num_folds} folds"
            )
        splitter = StratifiedGroupKFold(folds.num_folds, shuffle=True, random_state=folds.seed)
        parts = [sorted(set(records[test])) for _, test in splitter.split(records, labels, patients)]
        test, val = parts[folds.fold], parts[(folds.fold + 1) % folds.num_folds]
        return {"train": [r for r in folds.records if r not in test + val], "val": val, "test": test}

    def setup_predict(self) -> None:
        """The beats of every record of ``prediction.paths`` (annotated beats where the record has ``.atr``, else
        those XQRS detects), prepared as the test records are; a record that cannot be read is named and skipped."""
        windows, labels = [], []
        records = expand(self.prediction.paths, is_record)
        records = list(dict.fromkeys(path.with_suffix("") for path in records))
        for path in records:
            annotated = path.with_suffix(".atr").is_file()
            try:
                beats, classes, peaks = self.beats_at(path, annotated)
            except (DatasetError, FileNotFoundError) as error:
                note_unreadable(self.unreadable, path, error)
                continue
            if not annotated:
                print(f"medlab: {path}: no .atr annotations; {len(peaks)} beats found by wfdb's XQRS detector")
            windows += beats
            labels += classes
            for peak, label in zip(peaks, classes, strict=True):
                annotation = self.class_names[label] if label >= 0 else ""
                self.predicted_inputs.append({"input": str(path), "sample": peak, "annotated": annotation})
        if not windows:
            raise DatasetError(f"data.prediction.paths: no beats could be read from the {len(records)} records")
        self.datasets["predict"] = SequenceDataset(windows, np.array(labels, dtype=np.int64))

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict" and self.prediction.paths:
            if "predict" not in self.datasets:
                self.setup_predict()
            return
        if "train" in self.datasets:
            return
        splits = self.records
        if self.folds is None:
            names = [r for records in splits.values() for r in records]
        else:  # a cross-validation run tests its fold: the external test records are the refit's only
            names = self.folds.records + (splits["test"] if self.folds.fold is None else [])
        beats = {record: self.beats(record) for record in names}
        if self.folds is not None:
            splits = self.split_folds(beats)
            settings = {k: v for k, v in vars(self.folds).items() if k != "records"}
            self.record_splits(splits, {**settings, "classes": self.class_names})
        folder = resolve_data_root(self.root) / self.folder
        for split, records in splits.items():
            if not records and self.folds is not None and split != "train":
                continue  # the refit has no validation, and its test records may come later (medlab test)
            windows, labels, items = [], [], []
            for record in records:
                record_windows, classes, peaks = beats[record]
                windows += record_windows
                labels += classes
                items += [f"{record}:{peak}" for peak in peaks]  # the record and the sample of the R peak
            self.item_names[split] = items
            transform = self.augment if split == "train" else None
            self.datasets[split] = SequenceDataset(windows, np.array(labels, dtype=np.int64), transform)
            check_split_targets(np.array(labels), f"{folder} (data.{split}_records {records})", split, self.task,
                                self.num_classes, self.class_names)  # fmt: skip


CINC2017_CLASSES = {"N": "Normal", "A": "AF", "O": "Other", "~": "Noisy"}


class CinC2017(SequenceDataModule):
    """PhysioNet/CinC 2017 single-lead records of variable length (Normal, AF, Other, Noisy).

    Labels come from ``REFERENCE.csv``; a row with an unknown label or without its record is an error, or is dropped
    with ``skip_invalid_records: true`` (counts per reason in ``data_report.json``). Seeded stratified
    k-fold (scikit-learn): fold ``fold`` is the test set, the next fold validation, the rest training, written
    to ``splits.json`` in the run folder. Records are band-passed at their own rate, decimated by ``decimate``
    (300 Hz -> 100 Hz by default, enough for rhythm), and z-scored. The challenge score is the mean of the
    Normal, AF and Other F1s (``test/f1_Normal`` ...), reported by ``medlab`` as per-class F1.

    Args:
        folder: the folder of records and ``REFERENCE.csv``, relative to the data root.
        root: data root folder (default: ``$MEDLAB_DATA``, else ``../shared/data`` beside the checkout).
        reference: the labels file in that folder.
        sampling_rate: expected rate in Hz.
        decimate: keep every n-th sample after anti-alias filtering.
        num_folds: folds of the seeded stratified k-fold.
        fold: the test fold (the next one validates).
        split_seed: seed of the k-fold.
        skip_invalid_records: drop records without header or label, or with an unknown label, counted in
            ``data_report.json``.
        augment: vary the training records (``RecordAugment``: a random window, amplitude, noise).
        crop_seconds: length of the random training window (``augment``); ``null``: whole records.
        prediction: the WFDB records ``medlab predict`` reads instead of the test fold (``paths``): one row each.
        **loader_kwargs: ``batch_size``, ``num_workers``, ``balanced``.
    """

    task = "multiclass"
    num_classes = 4
    class_names = list(CINC2017_CLASSES.values())
    in_channels = 1

    def __init__(
        self,
        folder: str = "ecg/cinc2017_af_400",
        root: str | None = None,
        reference: str = "REFERENCE.csv",
        sampling_rate: int = 300,
        decimate: int = 3,
        num_folds: int = 5,
        fold: int = 0,
        split_seed: int = 0,
        skip_invalid_records: bool = False,
        augment: bool = False,
        crop_seconds: float | None = None,
        prediction: Prediction = Prediction(),
        **loader_kwargs: Any,
    ) -> None:
        super().__init__(**loader_kwargs)
        self.prediction = prediction
        crop = None if crop_seconds is None else round(crop_seconds * sampling_rate / decimate)
        self.augment = RecordAugment(crop) if augment else None
        if not 0 <= fold < num_folds:
            raise ValueError(f"data.fold must be in [0, {num_folds - 1}], got {fold}")
        self.skip_invalid_records = skip_invalid_records
        self.folder, self.root, self.reference = folder, root, reference
        self.sampling_rate, self.decimate = sampling_rate, decimate
        self.num_folds, self.fold, self.split_seed = num_folds, fold, split_seed
        self.splits: dict[str, list[str]] = {}

    def labelled_records(self) -> dict[str, int]:
        folder = resolve_data_root(self.root) / self.folder
        reference = folder / self.reference
        if not reference.is_file():
            raise FileNotFoundError(f"{reference}: missing (expected rows of 'record,label' with labels N, A, O, ~)")
        rows: dict[str, str] = {}
        with reference.open() as handle:
            for row in csv.reader(handle):
                if len(row) >= 2 and row[0] and row[:2] != ["data_source", "class"]:
                    rows[row[0]] = row[1]
        # The records are the folder's (a folder may hold a subset of the challenge; REFERENCE.csv lists them all).
        stems = {p.stem for p in folder.iterdir() if p.suffix in (".hea", ".mat")}
        labels: dict[str, int] = {}
        invalid: dict[str, list[str]] = {"missing .hea": [], "no label": [], "unknown label": []}
        for record in sorted(stems):
            if not (folder / f"{record}.hea").is_file():
                invalid["missing .hea"].append(record)
            elif record not in rows:
                invalid["no label"].append(record)
            elif rows[record] not in CINC2017_CLASSES:
                invalid["unknown label"].append(f"{record} ({rows[record]!r})")
            else:
                labels[record] = list(CINC2017_CLASSES).index(rows[record])
        invalid = {reason: items for reason, items in invalid.items() if items}
        if invalid and not self.skip_invalid_records:
            detail = "; ".join(f"{reason}: {len(items)} ({', '.join(items[:5])}{', ...' if len(items) > 5 else ''})"
                               for reason, items in invalid.items())  # fmt: skip
            raise DatasetError(
                f"{folder}: {detail}. Expected a .hea header beside each signal file and a label in "
                f"{reference.name} (one of {', '.join(CINC2017_CLASSES)}); data.skip_invalid_records=true drops them "
                "(counted in the run folder's data_report.json)"
            )
        if invalid:
            self.run_files["data_report.json"] = {
                "source": str(reference),
                "dropped": {reason: {"count": len(items), "records": items} for reason, items in invalid.items()},
                "kept": len(labels),
            }
        if len(labels) < 2 * self.num_folds:
            raise DatasetError(
                f"{reference}: {len(labels)} labelled records found in {folder}, too few for {self.num_folds} folds"
            )
        return labels

    def split(self, labels: dict[str, int]) -> dict[str, list[str]]:
        records = sorted(labels)
        folds = StratifiedKFold(self.num_folds, shuffle=True, random_state=self.split_seed)
        parts = [test for _, test in folds.split(records, [labels[r] for r in records])]
        test, val = parts[self.fold], parts[(self.fold + 1) % self.num_folds]
        train = sorted(set(range(len(records))) - set(test) - set(val))
        return {
            name: [records[i] for i in sorted(part)] for name, part in (("train", train), ("val", val), ("test", test))
        }

    @property
    def preprocessing(self) -> dict[str, Any]:
        return {"input": f"the first lead at {self.sampling_rate} Hz, NaN interpolated", "filter": "bandpass 0.5-40 Hz",
                "decimate": self.decimate, "normalize": "z-score of the whole record",
                "layout": "float32 (1, 1, samples): one record per call"}  # fmt: skip

    def read(self, record: str) -> np.ndarray:
        return self.read_at(resolve_data_root(self.root) / self.folder / record)

    def setup_predict(self) -> None:
        """One row per record of ``prediction.paths``, read as the test records are; one that cannot be read is named
        and skipped."""
        records = list(dict.fromkeys(path.with_suffix("") for path in expand(self.prediction.paths, is_record)))
        signals = []
        for path in records:
            try:
                signals.append(self.read_at(path))
            except DatasetError as error:
                note_unreadable(self.unreadable, path, error)
                continue
            self.predicted_inputs.append({"input": str(path)})
        if not signals:
            raise DatasetError(f"data.prediction.paths: none of the {len(records)} records could be read")
        self.datasets["predict"] = SequenceDataset(signals, np.full(len(signals), -1, dtype=np.int64))

    def read_at(self, path: Path) -> np.ndarray:
        """A record's first lead, filtered, decimated and z-scored: (1, samples) float32."""
        try:
            header = wfdb.rdheader(str(path))
            samples = wfdb.rdrecord(str(path)).p_signal[:, 0]
        except Exception as error:
            raise DatasetError(f"{path}: the record cannot be read ({type(error).__name__}: {error})") from error
        if header.fs != self.sampling_rate:
            raise DatasetError(
                f"{path}: sampled at {header.fs} Hz, expected {self.sampling_rate} Hz (data.sampling_rate)"
            )
        samples = bandpass(fill_missing(samples.astype(np.float64), str(path)), self.sampling_rate)
        if self.decimate > 1:
            samples = scipy_signal.decimate(samples, self.decimate)
        return ((samples - samples.mean()) / (samples.std() + 1e-8))[None].astype(np.float32)

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict" and self.prediction.paths:
            if "predict" not in self.datasets:
                self.setup_predict()
            return
        if self.datasets:
            return
        labels = self.labelled_records()
        self.splits = self.split(labels)
        for name, records in self.splits.items():
            targets = np.array([labels[r] for r in records], dtype=np.int64)
            transform = self.augment if name == "train" else None
            self.datasets[name] = SequenceDataset([self.read(r) for r in records], targets, transform)
        self.check_splits(str(resolve_data_root(self.root) / self.folder / self.reference))
        self.record_splits(self.splits, {"num_folds": self.num_folds, "fold": self.fold, "split_seed": self.split_seed})
