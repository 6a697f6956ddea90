"""The tutorial notebook (docs/flow_tutorial.ipynb) runs from top to bottom: train, export,
golden model == PyTorch, RTL co-simulation bit- and cycle-exact, Ultra96 build (Yosys)."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "docs" / "flow_tutorial.ipynb"


@pytest.mark.slow
def test_tutorial_notebook_executes(tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "commit the notebook without outputs"
    monkeypatch.setenv("FRACBNN_TUTORIAL_DIR", str(tmp_path / "tutorial work"))
    # Run from a directory outside the repository, the packages on the path as after
    # `pip install -e .`.
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(outside)}})
    client.execute()          # raises CellExecutionError on the first failing cell
    work = tmp_path / "tutorial work"
    assert (work / "mynet.pt").is_file() and (work / "export" / "network.json").is_file()
    assert (work / "build-ultra96" / "create_project.tcl").is_file()
    texts = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                    for o in c.get("outputs", []))
    assert "0 mismatches" in texts and "every activation identical: True" in texts
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                 for o in c.get("outputs", []))
    assert images >= 3          # the training curve, the cycles plot, the resources plot
