"""Notebooks are committed without outputs (nbmake executes them in CI's setting; see ``make notebooks``)."""

import json

from tests.conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_the_four_notebooks_exist() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01_quickstart.ipynb", "02_reproduce_breastmnist.ipynb", "03_segmentation.ipynb", "04_ecg_rnn.ipynb",
    ]  # fmt: skip


def test_notebooks_are_committed_without_outputs() -> None:
    for path in NOTEBOOKS:
        for index, cell in enumerate(json.loads(path.read_text())["cells"]):
            if cell["cell_type"] == "code":
                assert not cell["outputs"] and cell["execution_count"] is None, (
                    f"{path.name} cell {index} has outputs: clear them before committing (Jupyter: Edit > Clear "
                    "Outputs of All Cells)"
                )
