"""The documentation site: every public name has an API entry, and `mkdocs build --strict` passes.

Adding a public name to linflow means adding its import to the block in `linflow/__init__.py`
(which defines `linflow.__all__`; the names load lazily) and one line
`::: linflow.NAME` to the page of its family in docs/api/; the first two tests say which names
lack either. The build test (skipped only where mkdocs is not installed; the `test` extra
installs it) fails on a broken link, a missing page or a name that mkdocstrings cannot find.
"""

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import linflow

ROOT = Path(__file__).resolve().parents[1]
API_PAGES = sorted((ROOT / "docs" / "api").glob("*.md"))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _module_names(module) -> list[str]:
    """Public functions and classes defined in `module` (e.g. `linflow.tasks`)."""
    return sorted(
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and obj.__module__ == module.__name__
    )


def public_names() -> list[str]:
    """`linflow.NAME` for every name of `linflow.__all__`; a submodule by its own names."""
    names = []
    for name in linflow.__all__:
        obj = getattr(linflow, name)
        if inspect.ismodule(obj):
            names += [f"linflow.{name}.{member}" for member in _module_names(obj)]
        else:
            names.append(f"linflow.{name}")
    return names


def documented_names() -> dict[str, str]:
    """`::: linflow.NAME` entries of docs/api/*.md, mapped to their page."""
    entries = {}
    for page in API_PAGES:
        for match in re.finditer(r"^::: (linflow\.\S+)\s*$", page.read_text(), re.MULTILINE):
            entries[match.group(1)] = page.name
    return entries


def test_all_is_the_public_namespace():
    for name in linflow.__all__:  # load every lazily imported name into the namespace
        getattr(linflow, name)
    # Submodules such as linflow.cli become attributes when something imports them.
    public = {
        name
        for name, obj in vars(linflow).items()
        if not name.startswith("_")
        and not (inspect.ismodule(obj) and obj.__name__ == f"linflow.{name}")
    } | {name for name in linflow.__all__ if inspect.ismodule(getattr(linflow, name, None))}
    missing = sorted(public - set(linflow.__all__))
    undefined = sorted(set(linflow.__all__) - public)
    assert not missing, (
        f"public names missing from linflow.__all__ (or make them private): {missing}"
    )
    assert not undefined, f"names in linflow.__all__ that linflow does not define: {undefined}"
    assert len(linflow.__all__) == len(set(linflow.__all__)), "linflow.__all__ repeats a name"


def test_every_public_name_has_an_api_entry():
    documented = documented_names()
    missing = [name for name in public_names() if name not in documented]
    assert not missing, (
        "public names with no entry in docs/api/*.md; add one line `::: NAME` to the page of "
        "its family (tasks, engines, closed-forms, modes, diagnostics, objectives, nonlinear, "
        "sweeps, plotting):\n  " + "\n  ".join(missing)
    )
    stale = sorted(set(documented) - set(public_names()))
    assert not stale, f"docs/api entries for names that are not public: {stale}"


def test_every_notebook_is_an_example_page():
    linked = {p.name for p in (ROOT / "docs" / "examples").glob("*.ipynb")}
    nav = (ROOT / "mkdocs.yml").read_text()
    missing = [p.name for p in NOTEBOOKS if p.name not in linked or f"examples/{p.name}" not in nav]
    assert not missing, (
        f"notebooks missing from the site: {missing}; add a symlink "
        "docs/examples/NAME.ipynb -> ../../notebooks/NAME.ipynb and a nav entry in mkdocs.yml"
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed")
    out = tmp_path_factory.mktemp("site")
    # The notebooks are executed by tests/test_notebooks.py; here they are only rendered.
    env = {**os.environ, "LINFLOW_DOCS_EXECUTE": "false", "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-5000:]}"
    return out


def test_site_documents_every_public_name(site):
    html = "".join(p.read_text() for p in (site / "api").glob("*/index.html"))
    missing = [name for name in public_names() if f'id="{name}"' not in html]
    assert not missing, f"public names not rendered on the built API pages: {missing}"


def test_site_has_every_notebook(site):
    missing = [
        p.stem for p in NOTEBOOKS if not (site / "examples" / p.stem / "index.html").exists()
    ]
    assert not missing, f"notebooks without an example page in the built site: {missing}"
