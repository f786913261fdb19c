"""The notebooks: each runs top to bottom on the CPU, and is committed without outputs.

Executing them needs the ``notebooks`` extra (``pip install -e ".[test,notebooks]"``); without
it those tests are skipped.
"""

import json
import pathlib

import pytest

pytestmark = pytest.mark.full  # the full tier: pytest --full

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
CELL_TIMEOUT_S = 120


def test_the_notebooks_are_found():
    names = {p.name for p in PATHS}
    assert {"training_with_optax_and_flax.ipynb", "checking_gradient_formulas.ipynb",
            "large_batch_contrastive.ipynb", "learning_to_rank.ipynb"} <= names, names


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code, "no code cells"
    assert all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code)
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_notebook_runs(path, monkeypatch):
    for module in ("nbclient", "nbformat", "ipykernel", "matplotlib", "flax", "sklearn"):
        pytest.importorskip(module)
    import nbformat
    from nbclient import NotebookClient

    # The kernel inherits this environment: no GUI backend (the notebooks' %matplotlib inline
    # still captures their figures).
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if a cell fails
    errors = [out for cell in notebook.cells for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors
