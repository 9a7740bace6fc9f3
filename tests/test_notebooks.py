"""Notebooks are shared executed: committed with the outputs of their full setting (``make notebooks-shared``), each
under 1 MiB, saying the commit and the run folders they show; ``make test`` re-executes them from fresh kernels in the
quick setting without writing them back (nbmake)."""

import json

from tests.conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
MiB = 2**20


def test_the_six_notebooks_exist() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01_quickstart.ipynb", "02_reproduce_breastmnist.ipynb", "03_segmentation.ipynb", "04_ecg_rnn.ipynb",
        "05_registration.ipynb", "06_deep_vs_traditional.ipynb",
    ]  # fmt: skip


def test_notebooks_are_committed_executed_in_their_full_setting() -> None:
    for path in NOTEBOOKS:
        assert path.stat().st_size < MiB, f"{path.name}: {path.stat().st_size / MiB:.2f} MiB, more than 1 MiB"
        cells = [cell for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "code"]
        counts = [cell["execution_count"] for cell in cells]
        assert counts == list(range(1, len(cells) + 1)), f"{path.name}: not executed top to bottom ({counts})"
        outputs = [output for cell in cells for output in cell["outputs"]]
        assert not [o for o in outputs if o["output_type"] == "error"], f"{path.name}: a cell failed"
        shown = json.dumps(outputs)
        assert "full setting" in shown and "Executed at commit" in shown, f"{path.name}: no provenance of its outputs"


def test_markdown_headings_render() -> None:
    for path in NOTEBOOKS:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "markdown":
                assert not "".join(cell["source"]).startswith("!"), f"{path.name}: a markdown cell starts with '!'"
