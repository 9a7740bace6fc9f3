"""``medlab predict`` on new files against ``medlab test`` on the same data, for trained runs:

- quickstart: test scans written as PNG, DICOM, NIfTI and ``.npy`` files, plus a corrupt file, in one folder: the
  largest difference of p(lesion) from ``medlab test``'s, and what happened to the corrupt file;
- BreastMNIST: the 156 test images as PNG files: the AUC of the predicted probabilities and ``medlab test``'s;
- MIT-BIH: a test record (WFDB files): rows against annotated beats, and the largest probability difference.

    python -m benchmarks.predict_parity [--quickstart RUN] [--breastmnist RUN] [--mitbih RUN]

Without a run folder it takes the newest under ``runs/`` of that experiment, and says "not measured" when there is
none. Each checkpoint is the run's best (``summary.json``).
"""

import argparse
import csv
import json
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from torchmetrics.classification import BinaryAUROC

from benchmarks.common import print_rows, write_results
from datamodules.data_root import resolve_data_root
from research.cli import cli
from research.cli import main as medlab
from research.tracking import finish_wandb

REPO = Path(__file__).resolve().parents[1]


def newest(experiment: str) -> Path | None:
    runs = sorted((REPO / "runs" / experiment).glob("*/summary.json"))
    return runs[-1].parent if runs else None


def best(run: Path) -> Path:
    return run / json.loads((run / "summary.json").read_text())["best_checkpoint"]


def tested(run: Path, scratch: Path) -> list[dict[str, str]]:
    """``medlab test`` of the run's best checkpoint: its rows of ``test_predictions.csv``."""
    copy = scratch / "tested"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("wandb"), dirs_exist_ok=True)
    try:
        cli(["test", "--config", str(copy / "config.yaml"), f"--ckpt_path={best(copy)}",
             "--trainer.enable_progress_bar=false"])  # fmt: skip
    finally:
        finish_wandb()
    with (copy / "test_predictions.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def predicted(run: Path, inputs: list[Path], output: Path) -> tuple[list[dict[str, str]], int]:
    """``medlab predict`` of the files: its rows and exit code."""
    code = 0
    try:
        medlab(["predict", "--config", str(run / "config.yaml"), f"--ckpt_path={best(run)}",
              f"--data.prediction.paths=[{', '.join(str(p) for p in inputs)}]",
              f"--data.prediction.output_dir={output}", "--trainer.enable_progress_bar=false"])  # fmt: skip
    except SystemExit as exit:
        code = exit.code
    finally:
        finish_wandb()
    with (output / "predictions.csv").open(newline="") as handle:
        return list(csv.DictReader(handle)), code


def dicom(path: Path, image: np.ndarray) -> None:
    """A secondary-capture DICOM file of an 8-bit greyscale image."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID, "OT"
    ds.Rows, ds.Columns = image.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = image.astype(np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)


def quickstart(run: Path, scratch: Path) -> dict:
    reference = tested(run, scratch)
    data = cli(["export", "--config", str(run / "config.yaml"), f"--ckpt_path={best(run)}"]).datamodule
    images = data.arrays["test"][0][..., 0]
    folder = scratch / "quickstart"
    folder.mkdir()
    writers = {".png": lambda p, a: Image.fromarray(a).save(p), ".dcm": dicom, ".npy": np.save,
               ".nii.gz": lambda p, a: nib.save(nib.Nifti1Image(a.T[..., None], np.eye(4)), p)}  # fmt: skip
    for i in range(40):  # 10 of each format
        suffix = list(writers)[i % 4]
        writers[suffix](folder / f"{i:03d}{suffix}", images[i])
    (folder / "999_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    rows, code = predicted(run, [folder], scratch / "quickstart_out")
    read = [r for r in rows if not r.get("error")]
    differences = [abs(float(r["p_lesion"]) - float(reference[i]["p_lesion"])) for i, r in enumerate(read)]
    failed = [r for r in rows if r.get("error")]
    return {"case": "quickstart: 40 test scans as PNG, DICOM, NIfTI, .npy + 1 corrupt file", "rows": len(read),
            "max_abs_difference": max(differences), "exit_code": code,
            "unreadable": [f"{Path(r['input']).name}: {r['error']}" for r in failed]}  # fmt: skip


def breastmnist(run: Path, scratch: Path) -> dict:
    reference = tested(run, scratch)
    data = cli(["export", "--config", str(run / "config.yaml"), f"--ckpt_path={best(run)}"]).datamodule
    images, labels = data.arrays["test"]
    folder = scratch / "breastmnist"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image[..., 0]).save(folder / f"{i:03d}.png")
    rows, code = predicted(run, [folder], scratch / "breastmnist_out")
    column = [k for k in rows[0] if k.startswith("p_")][1]  # class 1, the positive class of the AUC
    auc = float(BinaryAUROC()(torch.tensor([float(r[column]) for r in rows]), torch.from_numpy(labels)))
    expected = float(BinaryAUROC()(torch.tensor([float(r[column]) for r in reference]), torch.from_numpy(labels)))
    summary = json.loads((run / "summary.json").read_text())["test"]["test/auc"]
    return {"case": "BreastMNIST: the 156 test images as PNG files", "rows": len(rows), "auc_predict": auc,
            "auc_medlab_test": expected, "auc_summary": summary, "exit_code": code}  # fmt: skip


def mitbih(run: Path, scratch: Path) -> dict:
    reference = tested(run, scratch)
    record = reference[-1]["item"].split(":")[0]
    folder = scratch / "mitbih"
    folder.mkdir()
    source = resolve_data_root(None) / "ecg" / "mitdb" / record
    for suffix in (".hea", ".dat", ".atr"):
        shutil.copy(source.with_suffix(suffix), folder)
    rows, code = predicted(run, [folder / record], scratch / "mitbih_out")
    expected = [r for r in reference if r["item"].startswith(f"{record}:")]
    names = [k for k in rows[0] if k.startswith("p_")]
    differences = [abs(float(r[k]) - float(e[k])) for r, e in zip(rows, expected, strict=True) for k in names]
    import wfdb

    from datamodules.ecg import AAMI

    annotated = int(np.isin(wfdb.rdann(str(source), "atr").symbol, list(AAMI)).sum())
    return {"case": f"MIT-BIH: record {record} (WFDB files)", "rows": len(rows), "annotated_beats": annotated,
            "max_abs_difference": max(differences), "exit_code": code}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quickstart", type=Path)
    parser.add_argument("--breastmnist", type=Path)
    parser.add_argument("--mitbih", type=Path)
    args = parser.parse_args()
    cases = {"quickstart": (quickstart, args.quickstart or newest("quickstart")),
             "breastmnist": (breastmnist, args.breastmnist or newest("medmnist/breastmnist_resnet18_28")),
             "mitbih": (mitbih, args.mitbih or newest("ecg/mitbih_lstm"))}  # fmt: skip
    results, rows = [], []
    for name, (measure, run) in cases.items():
        if run is None:
            rows.append([name, "not measured: no run folder", "", ""])
            continue
        with tempfile.TemporaryDirectory() as scratch:
            found = {"run": str(run), **measure(run, Path(scratch))}
        results.append(found)
        figure = (f"AUC {found['auc_predict']:.6f} vs medlab test {found['auc_medlab_test']:.6f}" if "auc_predict" in
                  found else f"max |p - medlab test| {found['max_abs_difference']:.1e}")  # fmt: skip
        extra = f"{found['annotated_beats']} annotated beats" if "annotated_beats" in found else ""
        extra += "; ".join(found.get("unreadable", []))[:70]
        rows.append([found["case"], f"{found['rows']} rows, exit {found['exit_code']}", figure, extra])
    print_rows("medlab predict on files vs medlab test on the same data", ["case", "predict", "agreement", "notes"],
               rows)  # fmt: skip
    write_results("predict_parity", results)


if __name__ == "__main__":
    main()
