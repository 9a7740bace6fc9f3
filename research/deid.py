"""``medlab deid SRC DST``: de-identify a folder tree of DICOM files (and WFDB records, NIfTI files) before it enters
a study.

The DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile comes from ``dicom-anonymizer`` (its tables
of the 2026c standard: which attributes are removed, emptied or replaced); medlab adds what makes the output usable
for research and safe to share:

- UIDs and patient IDs are mapped by a keyed hash (HMAC-SHA256) of a project secret, so the same input gives the same
  output in every file and in every run with that secret (follow-up scans still link), and nobody without the secret
  can compute the mapping; without a secret, a random one for this run only. A series stays one series; UIDs in file
  and folder names are mapped the same way.
- ``--shift_dates`` keeps dates, shifted back by a per-patient number of days (from the same keyed hash), so
  intervals within a patient hold; otherwise the profile removes or replaces them.
- Private tags are removed except those in ``--keep_private``; PatientIdentityRemoved = YES and
  DeidentificationMethod (and its code sequence) are set. Pixel data and geometry are not touched.
- Files that may carry burned-in text (BurnedInAnnotation = YES, or modality US, SC, OT, XC) are refused and listed,
  unless ``--blank`` names the pixel regions to blank (row0,col0,row1,col1, in every frame).
- Files already de-identified by medlab are copied unchanged, so running it again on DST changes nothing.
- WFDB headers lose their comment lines (age, sex, diagnoses, medications in MIT-BIH) and base date and time; signal
  and annotation files are copied unchanged; ``--rename_records`` gives records keyed pseudonyms as names. NIfTI
  files get their free-text fields (descrip, aux_file, intent_name) cleared.
- ``<DST>_deid_report.csv`` beside DST (never inside: input paths can identify) has a row per input: input, output,
  action, reason, and how many attributes of the profile the file held and how many changed. ``--linkage FILE``
  (outside DST) writes original patient ID (and record name) -> pseudonym.
"""

import argparse
import csv
import hashlib
import hmac
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import nibabel as nib
import pydicom
import wfdb
from dicomanonymizer import simpledicomanonymizer
from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence


class DeidError(Exception):
    """Bad input to ``medlab deid``: said in one line, exit code 1."""


PROFILE = "dicomfields_2026c"  # dicom-anonymizer's tables of the DICOM standard 2026c
METHOD = "medlab deid"
TEXT_MODALITIES = ("US", "SC", "OT", "XC")  # modalities that commonly carry burned-in text
SECRET_ENV = "MEDLAB_DEID_SECRET"
NIFTI_TEXT = ("descrip", "aux_file", "intent_name")  # the NIfTI header's free text
WFDB_DATA = (".dat", ".atr")  # MIT-BIH signals and beat annotations: no identifiers


@dataclass(frozen=True)
class Keys:
    """The keyed mappings of one project: HMAC-SHA256 of the secret, one domain per kind of value."""

    secret: bytes

    def digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self.secret, f"{kind}:{value}".encode(), hashlib.sha256).digest()

    def uid(self, uid: str) -> str:
        """A UID under the 2.25 root (a 128-bit number, as UUID-derived UIDs are), at most 44 characters."""
        return "2.25." + str(int.from_bytes(self.digest("uid", uid)[:16], "big"))

    def pseudonym(self, patient_id: str) -> str:
        return "P" + self.digest("patient", patient_id).hex()[:12].upper()

    def record(self, name: str) -> str:
        """A WFDB record's new name."""
        return "R" + self.digest("record", name).hex()[:10]

    def day_offset(self, patient_id: str) -> int:
        """Days (1 to 3650) every date of this patient moves back."""
        return 1 + int.from_bytes(self.digest("dates", patient_id)[:4], "big") % 3650


def profile_tags() -> set[tuple[int, int]]:
    """Every single attribute the Basic Profile names (repeating groups aside)."""
    tags = dicom_anonymization_database_selector(PROFILE)["ALL_TAGS"]
    return {tag for tag in tags if len(tag) == 2}


def shift(value: str, vr: str, days: int) -> str:
    """A DA (YYYYMMDD) or DT (YYYYMMDD...) value moved back ``days``; other content after the date is kept."""
    if len(value) < 8 or not value[:8].isdigit():
        return ""
    moved = datetime.strptime(value[:8], "%Y%m%d").date() - timedelta(days=days)
    return max(moved, date(1, 1, 1)).strftime("%Y%m%d") + (value[8:] if vr == "DT" else "")


def elements(dataset: Dataset) -> list[Any]:
    """Every data element of the dataset, its file meta and its sequences' items."""
    found: list[Any] = []
    dataset.walk(lambda ds, element: found.append(element))
    meta = getattr(dataset, "file_meta", None)
    return found + (list(meta) if meta is not None else [])


def values_of(dataset: Dataset) -> dict[tuple[int, int], Any]:
    """The top-level attributes (with file meta) as plain values, to count what changed."""
    meta = list(getattr(dataset, "file_meta", None) or [])
    return {(e.tag.group, e.tag.element): str(e.value) for e in [*dataset, *meta] if e.tag != 0x7FE00010}


class Deidentifier:
    """De-identifies datasets with one project's keys.

    Args:
        keys: the project's keyed mappings.
        shift_dates: keep dates, shifted by a per-patient offset (else the profile's action).
        keep_private: private tags to keep, as ``(group, element)``.
    """

    def __init__(self, keys: Keys, shift_dates: bool = False, keep_private: list[tuple[int, int]] = ()) -> None:
        self.keys, self.shift_dates, self.keep_private = keys, shift_dates, list(keep_private)
        self.profile = profile_tags()
        self.linkage: dict[tuple[str, str], str] = {}  # (kind, original) -> pseudonym
        self.uids: dict[str, str] = {}

    def __call__(self, dataset: Dataset) -> tuple[int, int]:
        """De-identify in place; returns (profile attributes and private tags the dataset held, how many changed)."""
        before = values_of(dataset)
        patient = str(dataset.get("PatientID", "") or "")
        pseudonym = self.keys.pseudonym(patient)
        self.linkage[("patient", patient)] = pseudonym
        for element in elements(dataset):
            if element.VR == "UI" and element.value:
                values = element.value if isinstance(element.value, (list, Sequence)) else [element.value]
                for uid in values:
                    self.uids.setdefault(str(uid), self.keys.uid(str(uid)))
        # dicom-anonymizer replaces a UID through its cache of old -> new UIDs (random by default): filled with the
        # keyed UIDs, every replaced UID, nested in sequences too, gets its keyed value.
        # An empty UID stays empty (not one random UID shared by every file that lacks it).
        simpledicomanonymizer.dictionary.update({**self.uids, "": ""})
        rules: dict[tuple[int, int], Callable] = {
            (0x0010, 0x0010): set_to(pseudonym),
            (0x0010, 0x0020): set_to(pseudonym),
        }
        if self.shift_dates:
            days = self.keys.day_offset(patient)
            for element in elements(dataset):
                if element.VR in ("DA", "DT") and isinstance(element.value, str) and element.value:
                    element.value = shift(element.value, element.VR, days)
            rules |= {(e.tag.group, e.tag.element): keep for e in dataset if e.VR in ("DA", "DT", "TM")}
        rules |= dict.fromkeys(self.keep_private, keep)
        # The profile covers attributes inside sequences too; dicom-anonymizer applies it to the top level, so every
        # sequence item gets it first, the deepest first.
        for item in [*sequence_items(dataset), dataset]:
            simpledicomanonymizer.anonymize_dataset(item, rules, delete_private_tags=True, base_rules_gen=base_rules)
        dataset.PatientIdentityRemoved = "YES"
        dataset.DeidentificationMethod = [  # LO: values of at most 64 characters
            METHOD, "DICOM PS3.15 Basic Profile", f"dicom-anonymizer {version('dicom-anonymizer')} {PROFILE}",
            "keyed UIDs and pseudonyms", *(["dates shifted per patient"] if self.shift_dates else []),
        ]  # fmt: skip
        codes = [("113100", "Basic Application Confidentiality Profile")]
        if self.shift_dates:
            codes.append(("113107", "Retain Longitudinal Temporal Information Modified Dates Option"))
        dataset.DeidentificationMethodCodeSequence = Sequence([code_item(*code) for code in codes])
        after = values_of(dataset)
        held = [t for t in before if t in self.profile or t[0] % 2 == 1]
        return len(held), sum(1 for t in held if after.get(t) != before[t])


def sequence_items(dataset: Dataset) -> list[Dataset]:
    """Every item of every sequence in the dataset, an item's own items before it."""
    found = []
    for element in dataset:
        if element.VR == "SQ":
            for item in element.value:
                found += [*sequence_items(item), item]
    return found


def base_rules() -> dict:
    """The Basic Profile's action per attribute, from dicom-anonymizer's tables of ``PROFILE``."""
    return simpledicomanonymizer.initialize_actions(PROFILE)


def is_medlab_output(dataset: Dataset) -> bool:
    """De-identified by medlab deid (PatientIdentityRemoved = YES and medlab's method first)."""
    method = dataset.get("DeidentificationMethod", "")
    first = method[0] if isinstance(method, (list, pydicom.multival.MultiValue)) and method else method
    return str(dataset.get("PatientIdentityRemoved", "")).upper() == "YES" and str(first) == METHOD


def set_to(value: str) -> Callable:
    def apply(dataset: Dataset, tag: tuple[int, int]) -> None:
        if tag in dataset:
            dataset[tag].value = value

    return apply


def keep(dataset: Dataset, tag: tuple[int, int]) -> None:
    """Leave the attribute as it is (dicom-anonymizer's rule signature)."""


def code_item(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
    return item


def read_dicom(path: Path) -> Dataset | None:
    """The file as DICOM (a file without the preamble too, if it holds DICOM attributes), or None."""
    try:
        return pydicom.dcmread(path)
    except InvalidDicomError:
        try:
            dataset = pydicom.dcmread(path, force=True)
        except Exception:
            return None
        return dataset if "SOPClassUID" in dataset or "Modality" in dataset else None
    except Exception:
        return None


def refusal(dataset: Dataset) -> str | None:
    """Why a file may carry identifiers in its pixels, or None."""
    if str(dataset.get("BurnedInAnnotation", "")).upper() == "YES":
        return "BurnedInAnnotation is YES: its pixels carry text"
    modality = str(dataset.get("Modality", ""))
    if modality in TEXT_MODALITIES:
        return f"modality {modality} commonly carries burned-in text"
    return None


def blank(dataset: Dataset, regions: list[tuple[int, int, int, int]]) -> None:
    """Set each (row0, col0, row1, col1) region of every frame to the image's minimum; compressed pixel data is
    decompressed first (and stays so)."""
    if dataset.file_meta.TransferSyntaxUID.is_compressed:
        dataset.decompress()
    pixels = dataset.pixel_array.copy()
    colour = int(dataset.get("SamplesPerPixel", 1)) > 1
    for row0, col0, row1, col1 in regions:
        where = (..., slice(row0, row1), slice(col0, col1), *([slice(None)] if colour else []))
        pixels[where] = pixels.min()
    dataset.PixelData = pixels.tobytes()


def renamed(relative: Path, uids: dict[str, str]) -> Path:
    """The relative path with every original UID in its names replaced by its keyed UID (longest first)."""
    text = str(relative)
    for old in sorted((u for u in uids if len(u) > 8 and u in text), key=len, reverse=True):
        text = text.replace(old, uids[old])
    return Path(text)


def deidentify_wfdb_header(path: Path, output: Path) -> tuple[int, int]:
    """A WFDB header without its comment lines (age, sex, diagnoses, medications in MIT-BIH) and base date and time,
    rewritten by wfdb under ``output``'s name (its signal files renamed alike); the signals are not touched. Returns
    (fields found, fields removed)."""
    record = wfdb.rdheader(str(path.with_suffix("")))
    found = len(record.comments or []) + (record.base_date is not None) + (record.base_time is not None)
    record.comments, record.base_date, record.base_time = [], None, None
    renamed_to = output.name.removesuffix(".hea")
    record.file_name = [renamed_to + Path(f).suffix if Path(f).stem == path.stem else f for f in record.file_name]
    record.record_name = renamed_to
    output.parent.mkdir(parents=True, exist_ok=True)
    record.wrheader(write_dir=str(output.parent))
    return found, found


def deidentify_nifti(path: Path, output: Path) -> tuple[int, int]:
    """A NIfTI file with its free-text header fields cleared; the voxels and the affine are not touched."""
    image = nib.load(path)
    found = sum(1 for field in NIFTI_TEXT if bytes(image.header[field]).strip(b"\0 "))
    for field in NIFTI_TEXT:
        image.header[field] = b""
    output.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, output)
    return len(NIFTI_TEXT), found


def deidentify_tree(
    source: Path,
    target: Path,
    deidentifier: Deidentifier,
    regions: list[tuple[int, int, int, int]] = (),
    rename_records: bool = False,
) -> list[dict[str, Any]]:
    """Every file under ``source`` into the same place under ``target``: de-identified, copied unchanged (already
    de-identified by medlab; WFDB signal and annotation files), or refused / not copied with the reason. A file that
    may show text in its pixels is refused, unless ``regions`` say where to blank it. A row per file."""
    rows = []
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        relative = path.relative_to(source)
        row = {"input": str(path), "output": "", "action": "", "reason": "", "profile_attributes": "", "changed": ""}
        other = {".hea": ("WFDB header: comments and base date/time removed", deidentify_wfdb_header),
                 ".nii": ("NIfTI: descrip, aux_file, intent_name cleared", deidentify_nifti)}  # fmt: skip
        kind = ".nii" if path.name.endswith((".nii", ".nii.gz")) else path.suffix
        if rename_records and kind in (".hea", *WFDB_DATA):
            relative = relative.with_name(deidentifier.keys.record(path.stem) + path.suffix)
            deidentifier.linkage[("record", path.stem)] = relative.stem
        if kind in other:
            reason, deidentify = other[kind]
            held, changed = deidentify(path, target / relative)
            rows.append({**row, "output": str(target / relative), "action": "de-identified", "reason": reason,
                         "profile_attributes": held, "changed": changed})  # fmt: skip
            continue
        if kind in WFDB_DATA:
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / relative)
            rows.append({**row, "output": str(target / relative), "action": "unchanged",
                         "reason": "WFDB signal or annotation file: samples and beat labels only"})  # fmt: skip
            continue
        dataset = read_dicom(path)
        if dataset is None:
            rows.append({**row, "action": "not copied", "reason": "not a DICOM file"})
            continue
        if is_medlab_output(dataset):
            output = target / relative
            output.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, output)
            rows.append({**row, "output": str(output), "action": "unchanged", "reason": "already de-identified by "
                         "medlab deid"})  # fmt: skip
            continue
        reason = refusal(dataset)
        if reason and not regions:
            rows.append({**row, "action": "refused", "reason": f"{reason}; name the regions to blank (--blank)"})
            continue
        if reason:
            blank(dataset, regions)
        held, changed = deidentifier(dataset)
        output = target / renamed(relative, deidentifier.uids)
        output.parent.mkdir(parents=True, exist_ok=True)
        dataset.save_as(output, enforce_file_format=False)  # written as it was read (a file without preamble too)
        done = "PS3.15 Basic Profile" + (f"; {reason}: regions {regions} blanked" if reason else "")
        rows.append({**row, "output": str(output), "action": "de-identified", "reason": done,
                     "profile_attributes": held, "changed": changed})  # fmt: skip
    return rows


def project_keys(secret_file: str | None) -> Keys:
    """The project secret from a file or ``$MEDLAB_DEID_SECRET`` (never from the command line, which other users of
    the machine can see); without one, a random secret for this run."""
    if secret_file:
        path = Path(secret_file)
        if not path.is_file():
            raise DeidError(f"--secret_file {path}: no such file")
        secret = path.read_bytes().strip()
        if len(secret) < 16:
            raise DeidError(f"--secret_file {path}: the secret has {len(secret)} bytes; use at least 16")
        return Keys(secret)
    if os.environ.get(SECRET_ENV):
        return Keys(os.environ[SECRET_ENV].encode())
    return Keys(os.urandom(32))


def parse_tag(text: str) -> tuple[int, int]:
    """``(0019,10XX)``-style text as (group, element); the group must be odd (private)."""
    digits = text.strip("() ").replace(",", "")
    if len(digits) != 8 or any(c not in "0123456789abcdefABCDEF" for c in digits) or int(digits[:4], 16) % 2 == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a private tag like (0019,100A)")
    return int(digits[:4], 16), int(digits[4:], 16)


def parse_region(text: str) -> tuple[int, int, int, int]:
    """``row0,col0,row1,col1`` (end exclusive) as four integers."""
    parts = text.split(",")
    if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not a region like 0,0,40,512 (row0,col0,row1,col1)")
    row0, col0, row1, col1 = (int(p) for p in parts)
    if row1 <= row0 or col1 <= col0:
        raise argparse.ArgumentTypeError(f"{text!r}: the region ends before it starts")
    return row0, col0, row1, col1


def main(args: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="medlab deid", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", type=Path, help="the folder tree of DICOM files to de-identify")
    parser.add_argument("target", type=Path, help="where the de-identified tree goes (a new or empty folder)")
    parser.add_argument("--secret_file", help=f"a file holding the project secret (or set ${SECRET_ENV})")
    parser.add_argument("--shift_dates", action="store_true", help="keep dates, moved back per patient")
    parser.add_argument("--keep_private", nargs="*", type=parse_tag, default=[], metavar="TAG",
                        help="private tags known to be safe, kept, e.g. (0019,100A)")  # fmt: skip
    parser.add_argument("--blank", nargs="*", type=parse_region, default=[], metavar="ROW0,COL0,ROW1,COL1",
                        help="pixel regions to blank in files that may show burned-in text (else refused)")  # fmt: skip
    parser.add_argument("--rename_records", action="store_true", help="WFDB records get keyed pseudonyms as names")
    parser.add_argument("--linkage", type=Path, help="write original patient ID -> pseudonym here (outside target)")
    options = parser.parse_args(args)
    source, target = options.source.resolve(), options.target.resolve()
    try:
        if not source.is_dir():
            raise DeidError(f"{options.source}: no such folder")
        if target == source or source in target.parents or target in source.parents:
            raise DeidError(f"{options.target}: the target must be outside the source and the source outside it")
        if target.exists() and any(target.iterdir()):
            raise DeidError(f"{options.target}: not empty; medlab deid writes into a new or empty folder")
        report = target.with_name(f"{target.name}_deid_report.csv")
        if options.linkage and target in options.linkage.resolve().parents:
            raise DeidError(f"--linkage {options.linkage}: inside the target; it would identify the patients there")
        started = time.perf_counter()
        deidentifier = Deidentifier(project_keys(options.secret_file), options.shift_dates, options.keep_private)
        rows = deidentify_tree(source, target, deidentifier, options.blank, options.rename_records)
    except DeidError as error:
        print(f"medlab: error: {error}", file=sys.stderr)
        sys.exit(1)
    with report.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["input"])
        writer.writeheader()
        writer.writerows(rows)
    if options.linkage:
        with options.linkage.open("w", newline="") as handle:
            links = [(kind, original, new) for (kind, original), new in sorted(deidentifier.linkage.items())]
            csv.writer(handle).writerows([("kind", "original", "pseudonym"), *links])
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["action"]] = counts.get(row["action"], 0) + 1
    summary = ", ".join(f"{n} {action}" for action, n in sorted(counts.items()))
    print(f"medlab deid: {len(rows)} files ({summary}) in {time.perf_counter() - started:.1f} s -> {target}; "
          f"report: {report}")  # fmt: skip
    if counts.get("refused"):
        sys.exit(1)
