"""Every notebook runs top to bottom (at its small size) in a kernel of this Python."""

import json
import sys
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory):
    """A kernel spec for the running interpreter, so a fresh venv needs no installed kernel."""
    kernels = tmp_path_factory.mktemp("kernels")
    spec = kernels / "linflow-test"
    spec.mkdir()
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "linflow tests", "language": "python"})
    )
    return KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)


def test_notebooks_found():
    assert len(NOTEBOOKS) >= 5


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, kernel_specs, monkeypatch):
    notebook = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        f"{path.name} has outputs: strip them before committing"
    )
    monkeypatch.setenv("LINFLOW_QUICK", "1")  # each notebook's small size
    monkeypatch.setenv("MPLBACKEND", "Agg")
    manager = KernelManager(kernel_name="linflow-test", kernel_spec_manager=kernel_specs)
    client = nbclient.NotebookClient(
        notebook, km=manager, timeout=300, resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert not errors
