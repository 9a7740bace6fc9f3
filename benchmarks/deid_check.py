"""``medlab deid`` on DICOM files that carry identifiers: pydicom's test files and the shared CT and MR series.

Per file: how many attributes of the Basic Profile (and private tags) it held, how many changed, whether any original
value of a profile attribute is left anywhere in the output (sequences and file meta included), whether a private tag
is left, and whether the output reads with pydicom. Then the seconds ``medlab deid`` takes on the 20-slice CT series
as its own process (median of 3; start-up included, and the processing alone as it prints it).

    python -m benchmarks.deid_check
"""

import argparse
import csv
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file

from benchmarks.common import print_rows, write_results
from datamodules.data_root import resolve_data_root
from research.deid import profile_tags

IDENTIFIED = ["examples_overlay.dcm", "CT_small.dcm", "waveform_ecg.dcm", "rtstruct.dcm", "MR_small.dcm"]
SERIES = ["ct_series_jpeg2000", "mr_series_5"]


def profile_values(dataset: pydicom.Dataset, tags: set) -> dict[tuple[int, int], set[str]]:
    """Every non-empty value of the given tags, anywhere in the dataset (sequences and file meta too)."""
    found: dict[tuple[int, int], set[str]] = {}

    def collect(_: pydicom.Dataset, element: pydicom.DataElement) -> None:
        key = (element.tag.group, element.tag.element)
        if key in tags and element.VR != "SQ" and element.value not in (None, "", b""):
            found.setdefault(key, set()).add(str(element.value))

    dataset.walk(collect)
    for element in getattr(dataset, "file_meta", []):
        collect(dataset, element)
    return found


def leftovers(before: pydicom.Dataset, after: pydicom.Dataset, tags: set) -> dict[tuple[int, int], set[str]]:
    """Original values of profile attributes still found in the output."""
    original, kept = profile_values(before, tags), profile_values(after, tags)
    return {tag: original[tag] & kept[tag] for tag in original if original[tag] & kept.get(tag, set())}


def private_tags(dataset: pydicom.Dataset) -> list:
    found: list = []
    dataset.walk(lambda _, element: found.append(element.tag) if element.tag.is_private else None)
    return found


def deid(source: Path, target: Path) -> tuple[float, float]:
    """``medlab deid`` as its own process: (wall seconds, seconds it reports for the files)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "research.commands", "deid", str(source), str(target)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    wall = time.perf_counter() - started
    return wall, float(re.search(r"in ([\d.]+) s", done.stdout).group(1))


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    data = resolve_data_root(None) / "dicom"
    tags = profile_tags()
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "source"
        (source / "pydicom").mkdir(parents=True)
        for name in IDENTIFIED:
            shutil.copy(get_testdata_file(name), source / "pydicom" / name)
        for series in SERIES:
            shutil.copytree(data / series, source / series)
        deid(source, Path(scratch) / "out")
        with (Path(scratch) / "out_deid_report.csv").open(newline="") as handle:
            report = list(csv.DictReader(handle))
        results, rows = [], []
        for row in report:
            before = pydicom.dcmread(row["input"], force=True)
            after = pydicom.dcmread(row["output"], force=True)
            found = {"file": str(Path(row["input"]).relative_to(source)), "action": row["action"],
                     "profile_attributes": int(row["profile_attributes"]), "changed": int(row["changed"]),
                     "original_values_left": len(leftovers(before, after, tags)),
                     "private_tags_left": len(private_tags(after)), "reads": True}  # fmt: skip
            results.append(found)
            name = found["file"] if len(found["file"]) < 44 else found["file"][:20] + "..." + found["file"][-20:]
            rows.append([name, found["action"], str(found["profile_attributes"]), str(found["changed"]),
                         str(found["original_values_left"]), str(found["private_tags_left"])])  # fmt: skip
        timings = [deid(data / "ct_series_jpeg2000", Path(scratch) / f"ct{i}") for i in range(3)]
    print_rows(f"medlab deid: {len(report)} files, one report row each",
               ["file", "action", "profile attributes + private tags held", "changed", "original values left",
                "private tags left"], rows)  # fmt: skip
    wall, files = statistics.median(t[0] for t in timings), statistics.median(t[1] for t in timings)
    print(f"20-slice CT series: {wall:.1f} s for the command (median of 3, start-up included), {files:.2f} s for the "
          "files")  # fmt: skip
    write_results("deid_check", [*results, {"ct_series_command_s": wall, "ct_series_files_s": files}])


if __name__ == "__main__":
    main()
