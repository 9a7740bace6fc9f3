"""``medlab deid``: the PS3.15 Basic Profile on real DICOM files (pydicom's test files with identifiers and the
shared CT and MR series), keyed UIDs that keep a series one series, pixels and geometry untouched, and a second run
that changes nothing."""

import csv
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from monai.data import PydicomReader
from monai.transforms import LoadImage
from pydicom.data import get_testdata_file

from benchmarks.deid_check import leftovers, private_tags
from research.cli import main
from research.deid import profile_tags

IDENTIFIED = ["examples_overlay.dcm", "CT_small.dcm", "waveform_ecg.dcm", "rtstruct.dcm", "MR_small.dcm"]


def deid(source: Path, target: Path, *args: str) -> list[dict[str, str]]:
    try:
        main(["deid", str(source), str(target), *args])
    except SystemExit as exit:
        assert exit.code in (0, None), exit.code
    with target.with_name(f"{target.name}_deid_report.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def instance(dataset: pydicom.Dataset) -> str:
    """The SOP Instance UID (the shared CT series has it in the file meta only)."""
    meta = getattr(dataset, "file_meta", None)
    return str(dataset.get("SOPInstanceUID", "") or (meta.get("MediaStorageSOPInstanceUID", "") if meta else ""))


def read(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(path, force=True)


@pytest.fixture
def source(tmp_path: Path, shared_data: Path) -> Path:
    folder = tmp_path / "source"
    (folder / "pydicom").mkdir(parents=True)
    for name in IDENTIFIED:
        shutil.copy(get_testdata_file(name), folder / "pydicom" / name)
    for series in ("ct_series_jpeg2000", "mr_series_5"):
        shutil.copytree(shared_data / "dicom" / series, folder / series)
    return folder


def test_no_value_of_a_profile_attribute_and_no_private_tag_remains(source: Path, tmp_path: Path) -> None:
    rows = deid(source, tmp_path / "out")
    inputs = sorted(p for p in source.rglob("*") if p.is_file())
    assert [row["input"] for row in rows] == [str(p) for p in inputs]  # a row per input, none skipped
    assert {row["action"] for row in rows} == {"de-identified"}
    tags = profile_tags()
    for row in rows:
        before, after = read(Path(row["input"])), read(Path(row["output"]))
        assert not leftovers(before, after, tags), row["input"]
        assert not private_tags(after), row["input"]
        assert after.PatientIdentityRemoved == "YES" and after.DeidentificationMethod[0] == "medlab deid"
        assert int(row["changed"]) > 0 and int(row["profile_attributes"]) >= int(row["changed"])
    assert "CT.1.3.12.2.1107" not in " ".join(row["output"] for row in rows)  # UIDs in file names are mapped too


def test_series_keep_pixels_geometry_and_structure_and_the_secret_decides_the_uids(source, tmp_path) -> None:
    secret, other = tmp_path / "secret", tmp_path / "other"
    secret.write_text("a project secret of 32 characters")
    other.write_text("another secret, also long enough")
    first = deid(source, tmp_path / "first", f"--secret_file={secret}", f"--linkage={tmp_path / 'link.csv'}")
    again = deid(source, tmp_path / "again", f"--secret_file={secret}")
    changed = deid(source, tmp_path / "changed", f"--secret_file={other}")
    load = LoadImage(reader=PydicomReader(), image_only=True)
    for series in ("ct_series_jpeg2000", "mr_series_5"):
        original, output = load(str(source / series)), load(str(tmp_path / "first" / series))
        assert np.array_equal(np.asarray(original), np.asarray(output)) and original.dtype == output.dtype
        assert np.array_equal(original.affine, output.affine)
        files = sorted((tmp_path / "first" / series).iterdir())
        assert (
            len({read(f).SeriesInstanceUID for f in files}) == 1 and len({read(f).StudyInstanceUID for f in files}) == 1
        )
    uids = [{instance(read(Path(r["output"]))) for r in run} - {""} for run in (first, again, changed)]
    assert uids[0] == uids[1] and len(uids[0]) == len(first) and not uids[0] & uids[2]
    links = list(csv.reader((tmp_path / "link.csv").open()))
    assert links[0] == ["kind", "original", "pseudonym"] and {row[0] for row in links[1:]} == {"patient"}


def test_a_second_run_on_the_output_changes_nothing(source: Path, tmp_path: Path) -> None:
    deid(source, tmp_path / "once")
    rows = deid(tmp_path / "once", tmp_path / "twice")
    assert {row["action"] for row in rows} == {"unchanged"}
    for row in rows:
        assert Path(row["input"]).read_bytes() == Path(row["output"]).read_bytes()


def test_dates_shift_by_one_offset_per_patient(source: Path, tmp_path: Path) -> None:
    rows = deid(source, tmp_path / "out", "--shift_dates")
    before = read(source / "mr_series_5" / "1.dcm")
    after = read(Path(next(r["output"] for r in rows if r["input"].endswith("mr_series_5/1.dcm"))))
    days = [(np.datetime64(f"{b[:4]}-{b[4:6]}-{b[6:8]}") - np.datetime64(f"{a[:4]}-{a[4:6]}-{a[6:8]}")).astype(int)
            for b, a in ((before.StudyDate, after.StudyDate), (before.PatientBirthDate, after.PatientBirthDate))
            if b]  # fmt: skip
    assert days and len(set(days)) == 1 and 1 <= days[0] <= 3650
    assert "113107" in [item.CodeValue for item in after.DeidentificationMethodCodeSequence]


def test_files_that_may_show_text_are_refused_and_nothing_is_skipped_silently(source, tmp_path, capsys) -> None:
    ultrasound = read(source / "pydicom" / "MR_small.dcm")
    ultrasound.Modality = "US"
    ultrasound.save_as(source / "pydicom" / "us.dcm")
    (source / "notes.txt").write_text("not an image")
    with pytest.raises(SystemExit) as refused:
        main(["deid", str(source), str(tmp_path / "out")])
    assert refused.value.code == 1
    rows = {Path(r["input"]).name: r for r in csv.DictReader((tmp_path / "out_deid_report.csv").open())}
    assert rows["us.dcm"]["action"] == "refused" and "burned-in text" in rows["us.dcm"]["reason"]
    assert rows["notes.txt"]["action"] == "not copied" and not (tmp_path / "out" / "pydicom" / "us.dcm").exists()


def test_the_target_must_be_new_and_the_linkage_outside_it(source: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("kept")
    for args, said in (([str(tmp_path / "full")], "not empty"),
                       ([str(tmp_path / "new"), f"--linkage={tmp_path / 'new' / 'link.csv'}"], "inside the target"),
                       ([str(source / "inside")], "outside the source")):  # fmt: skip
        with pytest.raises(SystemExit):
            main(["deid", str(source), *args])
        assert said in capsys.readouterr().err
    assert (tmp_path / "full" / "x").read_text() == "kept" and not (tmp_path / "new").exists()


def test_require_deidentified_refuses_the_original_series_and_reads_the_deidentified_one(
    run_medlab, shared_data: Path, tmp_path: Path, capsys
) -> None:
    run_dir = run_medlab("segmentation/synthetic3d_unet", "--data.num_images=6", "--data.image_size=32",
                         "--data.patches.size=[32, 32, 32]", "--trainer.max_epochs=1")  # fmt: skip
    original = shared_data / "dicom" / "mr_series_5"
    deid(original.parent, tmp_path / "deid")  # both shared series

    def predict(series: Path) -> None:
        main(["predict", "--config", str(run_dir / "config.yaml"), f"--ckpt_path={run_dir / 'checkpoints/last.ckpt'}",
              "--data.require_deidentified=true", f"--data.prediction.paths=[{series}]",
              f"--data.prediction.output_dir={tmp_path / 'masks'}"])  # fmt: skip

    with pytest.raises(SystemExit):
        predict(original)
    said = capsys.readouterr().err
    assert f"{original}/" in said and "not marked de-identified" in said and not (tmp_path / "masks").exists()
    predict(tmp_path / "deid" / "mr_series_5")
    assert len(list((tmp_path / "masks").iterdir())) == 1


def test_wfdb_headers_lose_their_comments_and_nifti_its_free_text_signals_and_voxels_kept(shared_data, tmp_path):
    import nibabel as nib
    import wfdb

    source = tmp_path / "source"
    source.mkdir()
    for suffix in (".hea", ".dat", ".atr"):
        shutil.copy(shared_data / "ecg" / "mitdb" / f"100{suffix}", source)
    image = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.diag([0.5, 0.7, 2, 1]))
    image.header["descrip"], image.header["aux_file"] = b"Doe^Jane 1970-01-01", b"MRN 123456"
    nib.save(image, source / "scan.nii.gz")
    rows = deid(source, tmp_path / "out")
    assert [Path(r["input"]).name for r in rows] == ["100.atr", "100.dat", "100.hea", "scan.nii.gz"]
    header = (tmp_path / "out" / "100.hea").read_text()
    assert "#" not in header and "Aldomet" not in header
    before = wfdb.rdrecord(str(source / "100"), physical=False).d_signal
    assert np.array_equal(before, wfdb.rdrecord(str(tmp_path / "out" / "100"), physical=False).d_signal)
    original, cleared = nib.load(source / "scan.nii.gz"), nib.load(tmp_path / "out" / "scan.nii.gz")
    assert bytes(cleared.header["descrip"]).strip(b"\0") == bytes(cleared.header["aux_file"]).strip(b"\0") == b""
    assert np.array_equal(np.asarray(cleared.dataobj), np.asarray(original.dataobj))
    assert np.array_equal(cleared.affine, original.affine)
    again = deid(tmp_path / "out", tmp_path / "again")
    assert all(Path(r["input"]).read_bytes() == Path(r["output"]).read_bytes() for r in again)


def test_named_regions_are_blanked_in_files_that_may_show_text_and_listed_private_tags_kept(tmp_path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    ultrasound = read(Path(get_testdata_file("MR_small.dcm")))
    ultrasound.Modality = "US"
    ultrasound.save_as(source / "us.dcm")
    shutil.copy(get_testdata_file("CT_small.dcm"), source / "ct.dcm")
    (row_ct, row_us) = deid(source, tmp_path / "out", "--blank", "0,0,10,20", "--keep_private", "(0009,1004)")
    before, after = ultrasound.pixel_array, read(Path(row_us["output"])).pixel_array
    assert (after[:10, :20] == before.min()).all() and np.array_equal(after[10:], before[10:])
    assert row_us["action"] == "de-identified" and "blanked" in row_us["reason"]
    kept = read(Path(row_ct["output"]))
    assert [str(e.tag) for e in kept if e.tag.is_private] == ["(0009,0010)", "(0009,1004)"]  # with its creator
    assert kept[0x0009, 0x1004].value == "HiSpeed CT/i"


def test_wfdb_records_can_be_renamed_by_pseudonym(shared_data: Path, tmp_path: Path) -> None:
    import wfdb

    source = tmp_path / "source"
    source.mkdir()
    for suffix in (".hea", ".dat", ".atr"):
        shutil.copy(shared_data / "ecg" / "mitdb" / f"100{suffix}", source)
    deid(source, tmp_path / "out", "--rename_records", f"--linkage={tmp_path / 'link.csv'}")
    (header,) = (tmp_path / "out").glob("*.hea")
    name = header.stem
    assert name != "100" and sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{name}.atr", f"{name}.dat",
                                                                                     f"{name}.hea"]  # fmt: skip
    renamed = wfdb.rdrecord(str(tmp_path / "out" / name), physical=False)
    assert np.array_equal(renamed.d_signal, wfdb.rdrecord(str(source / "100"), physical=False).d_signal)
    assert len(wfdb.rdann(str(tmp_path / "out" / name), "atr").sample) > 2000
    assert ["record", "100", name] in list(csv.reader((tmp_path / "link.csv").open()))
