"""The teaching notebooks: committed clean, shaped like a lesson, and running end to end.

The structural checks are cheap and run everywhere. The `notebooks` marker
selects the ones that start a real kernel and execute every notebook in quick
mode (CONCLAB_QUICK=1), as CI does.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from conclab.cli import main
from conclab.teaching import notebooks as nbrun

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "notebooks"
LESSONS = sorted(p.stem for p in FOLDER.glob("[0-9][0-9]-*.ipynb"))
PATHS = [FOLDER / f"{name}.ipynb" for name in LESSONS]
TEXTS = [FOLDER / f"{name}.py" for name in LESSONS]
QUICK_BUDGET_S = 90  # one notebook in quick mode; together they must stay well under 4 minutes


def read(path):
    return nbformat.read(path, as_version=4)


def test_every_lesson_is_a_pair_of_notebook_and_text_and_nothing_else():
    assert len(LESSONS) >= 6 and all(re.fullmatch(r"\d\d-[a-z0-9-]+", name) for name in LESSONS)
    assert [p.stem for p in nbrun.notebook_paths()] == LESSONS
    texts = sorted(p.stem for p in FOLDER.glob("*.py"))
    assert texts == LESSONS, (
        "every NN-topic.ipynb has its NN-topic.py (py:percent) and no .py stands alone"
    )
    others = sorted(
        p.name
        for p in FOLDER.iterdir()
        if p.suffix not in (".py", ".ipynb") and p.name not in ("README.md", ".ipynb_checkpoints")
    )
    assert not others, f"only lessons (and the README) belong in notebooks/: {others}"


@pytest.mark.parametrize("path", PATHS, ids=LESSONS)
def test_committed_notebook_carries_no_outputs_or_execution_counts(path):
    raw = json.loads(path.read_text(encoding="utf-8"))
    dirty = [
        i
        for i, cell in enumerate(raw["cells"])
        if cell["cell_type"] == "code"
        and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, (
        f"{path.name}: cells {dirty} carry outputs or "
        "execution counts - clear them before committing"
    )
    assert "widgets" not in raw["metadata"], f"{path.name}: saved widget state in the metadata"


@pytest.mark.parametrize("path", PATHS, ids=LESSONS)
def test_notebook_is_shaped_like_a_lesson(path):
    cells = read(path).cells
    first = cells[0]
    assert first.cell_type == "code" and "setup" in first.metadata.get("tags", []), (
        "the first cell must be the setup cell"
    )
    assert "quick_mode()" in first.source, "the setup cell must read quick mode (CONCLAB_QUICK)"
    assert first.source.lstrip().startswith("# Setup"), "the setup cell should say what it is"

    # "Predict, then measure": a guess cell (my_guess... = None) after a prompt that says "predict",
    # and a later cell that uses the guess.
    guesses = [
        i
        for i, c in enumerate(cells)
        if c.cell_type == "code" and re.search(r"^my_guess\w* = None", c.source, re.M)
    ]
    assert guesses, "no guess cell (my_guess_... = None)"
    for i in guesses:
        before = " ".join(
            c.source.lower() for c in cells[max(0, i - 3) : i] if c.cell_type == "markdown"
        )
        assert "predict" in before, f"guess cell {i} has no 'predict' prompt before it"
        names = re.findall(r"^(my_guess\w*) = None", cells[i].source, re.M)
        later = " ".join(c.source for c in cells[i + 1 :] if c.cell_type == "code")
        for name in names:
            assert name in later, f"{name} is never compared with a measurement"

    headings = [c.source for c in cells if c.cell_type == "markdown"]
    takeaway = [h for h in headings if h.startswith("## Takeaway")]
    exercises = [h for h in headings if h.startswith("## Exercises")]
    assert takeaway and exercises, "a notebook ends with a takeaway and exercises"
    assert cells[-1].source.startswith("## Exercises"), "the exercises come last"
    items = re.findall(r"^\d+\. ", exercises[0], re.M)
    assert 2 <= len(items) <= 3, f"2-3 exercises, found {len(items)}"
    assert any("](http" in h for h in headings), "the prose links its sources"


def test_notebooks_teach_from_the_charts_experiments():
    # The notebooks draw the experiments that `make charts` draws, so they never disagree.
    text = " ".join(c.source for p in PATHS[1:] for c in read(p).cells if c.cell_type == "code")
    used = set(re.findall(r'REGISTRY\["(\w+)"\]', text))
    assert used >= {
        "wsgi_vs_asgi",
        "timelines",
        "blocking",
        "threadpool",
        "gil",
        "workers",
        "open_vs_closed",
        "client_ceiling",
    }


def cells_of(notebook):
    """What a lesson says: each cell's type, source and tags (ids and outputs aside)."""
    return [
        (c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", ()))) for c in notebook.cells
    ]


@pytest.mark.parametrize("name", LESSONS)
def test_notebook_and_its_text_pair_are_in_sync(name):
    jupytext = pytest.importorskip("jupytext")
    notebook = read(FOLDER / f"{name}.ipynb")
    text = jupytext.read(FOLDER / f"{name}.py")
    assert notebook.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent", (
        f"{name}.ipynb is not paired with its .py: run `make lessons`"
    )
    assert cells_of(text) == cells_of(notebook), (
        f"{name}.py and {name}.ipynb differ: run `make lessons`"
    )
    ids = [c.get("id") for c in notebook.cells]
    assert all(ids) and len(set(ids)) == len(ids), "every cell keeps a unique id"


def sync(folder):
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("jupytext")),
            "--sync",
            "--quiet",
            *map(str, sorted(folder.glob("*.py"))),
        ],
        capture_output=True,
        text=True,
        cwd=folder,
    )


def test_make_lessons_is_idempotent_and_carries_an_edit_to_the_notebook(tmp_path):
    pytest.importorskip("jupytext")
    for path in (*PATHS, *TEXTS):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    assert sync(tmp_path).returncode == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sync(tmp_path).returncode == 0
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before, (
        "a second sync changed something"
    )
    first = tmp_path / TEXTS[0].name
    ids = [c["id"] for c in read(tmp_path / PATHS[0].name).cells]
    text = first.read_text(encoding="utf-8")
    heading = next(line for line in text.splitlines() if line.startswith("# # "))
    first.write_text(text.replace(heading, heading + " (edited)", 1), encoding="utf-8")
    assert sync(tmp_path).returncode == 0
    edited = read(tmp_path / PATHS[0].name)
    assert any(c.source.startswith(heading[2:] + " (edited)") for c in edited.cells)
    assert [c["id"] for c in edited.cells] == ids, "cell ids survive an edit of the text"
    assert "setup" in edited.cells[0].metadata["tags"]


def test_lesson_code_passes_ruff():
    pytest.importorskip("ruff")
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--quiet", *map(str, TEXTS)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", LESSONS)
def test_lesson_code_cells_fit_in_100_columns(name):
    # ruff's E501 is off for notebooks/*.py, whose markdown cells carry long links and
    # claim markers; the code cells keep the line length of the rest of the code.
    jupytext = pytest.importorskip("jupytext")
    long = [
        line
        for cell in jupytext.read(FOLDER / f"{name}.py").cells
        if cell.cell_type == "code"
        for line in cell.source.splitlines()
        if len(line) > 100
    ]
    assert not long, f"{name}.py: code lines over 100 columns: {long}"


def test_readme_lists_every_notebook_in_order():
    text = (FOLDER / "README.md").read_text(encoding="utf-8")
    positions = [text.find(f"{name}.ipynb") for name in LESSONS]
    assert all(p >= 0 for p in positions), "the README must name every notebook"
    assert positions == sorted(positions), "the README lists the notebooks in teaching order"


def test_unknown_notebook_is_a_one_line_error(capsys):
    assert main(["notebooks", "--out", "unused", "--only", "99"]) == 2
    err = capsys.readouterr().err
    assert "no notebook matches '99'" in err and "01-sync-vs-async" in err


@pytest.mark.notebooks
def test_a_failing_cell_is_reported_and_still_exported(tmp_path):
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"),
            nbformat.v4.new_code_cell("1 / 0"),
            nbformat.v4.new_code_cell("print('never runs')"),
        ]
    )
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    done = nbrun.execute(path, quick=True)
    assert done.error and "ZeroDivisionError" in done.error
    assert (
        done.notebook.cells[0].outputs[0]["text"].strip() == sys.executable
    )  # the kernel is this venv's Python
    assert not done.notebook.cells[2].get("outputs")
    html = nbrun.to_html(done, tmp_path / "out")
    assert "ZeroDivisionError" in html.read_text(encoding="utf-8")
    assert read(path).cells[1].get("outputs") == [], "the source notebook is never modified"


@pytest.mark.notebooks
@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", PATHS, ids=LESSONS)
def test_notebook_runs_in_quick_mode(path):
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        # tests/test_browser.py runs every notebook in JupyterLab, as a class does,
        # and checks the same things; running them twice would only cost minutes.
        pytest.skip("run by the browser suite (tests/test_browser.py)")
    done = nbrun.execute(path, quick=True, cell_timeout=QUICK_BUDGET_S * 2)
    assert done.error is None, f"{path.name} failed:\n{done.error[-3000:]}"
    errors = [
        o
        for c in done.notebook.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
    ]
    assert not errors
    images = [
        o
        for c in done.notebook.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "image/png" in o.get("data", {})
    ]
    assert images, f"{path.name} drew no chart"
    assert done.seconds < QUICK_BUDGET_S, f"{path.name} took {done.seconds:.0f} s in quick mode"


@pytest.mark.notebooks
def test_conclab_notebooks_writes_html(tmp_path, capsys):
    assert main(["notebooks", "--out", str(tmp_path), "--only", "01", "--quick"]) == 0
    page = tmp_path / "01-sync-vs-async.html"
    assert page.exists() and "one after another" in page.read_text(encoding="utf-8")
    assert "ok in" in capsys.readouterr().out
