"""The teaching notebooks: committed clean, shaped like a lesson, and running end to end.

The structural checks are cheap and run everywhere. The `notebooks` marker
selects the ones that start a real kernel and execute every notebook in quick
mode (CONCLAB_QUICK=1), as CI does.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from conclab import notebooks as nbrun
from conclab.cli import main

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "notebooks"
LESSONS = [
    "01-sync-vs-async",
    "02-wsgi-vs-asgi",
    "03-blocking-the-event-loop",
    "04-threadpools-and-the-gil",
    "05-workers",
    "06-measuring-honestly",
]
PATHS = [FOLDER / f"{name}.ipynb" for name in LESSONS]
QUICK_BUDGET_S = 90  # one notebook in quick mode; together they must stay well under 4 minutes


def read(path):
    return nbformat.read(path, as_version=4)


def test_every_lesson_has_a_notebook_and_nothing_else():
    assert [p.stem for p in nbrun.notebook_paths()] == LESSONS


@pytest.mark.parametrize("path", PATHS, ids=LESSONS)
def test_committed_notebook_carries_no_outputs_or_execution_counts(path):
    raw = json.loads(path.read_text(encoding="utf-8"))
    dirty = [i for i, cell in enumerate(raw["cells"])
             if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs or execution counts - clear them before committing"
    assert "widgets" not in raw["metadata"], f"{path.name}: saved widget state in the metadata"


@pytest.mark.parametrize("path", PATHS, ids=LESSONS)
def test_notebook_is_shaped_like_a_lesson(path):
    cells = read(path).cells
    first = cells[0]
    assert first.cell_type == "code" and "setup" in first.metadata.get("tags", []), "the first cell must be the setup cell"
    assert "quick_mode()" in first.source, "the setup cell must read quick mode (CONCLAB_QUICK)"
    assert first.source.lstrip().startswith("# Setup"), "the setup cell should say what it is"

    # "Predict, then measure": a guess cell (my_guess... = None) after a prompt that says "predict",
    # and a later cell that uses the guess.
    guesses = [i for i, c in enumerate(cells) if c.cell_type == "code" and re.search(r"^my_guess\w* = None", c.source, re.M)]
    assert guesses, "no guess cell (my_guess_... = None)"
    for i in guesses:
        before = " ".join(c.source.lower() for c in cells[max(0, i - 3):i] if c.cell_type == "markdown")
        assert "predict" in before, f"guess cell {i} has no 'predict' prompt before it"
        names = re.findall(r"^(my_guess\w*) = None", cells[i].source, re.M)
        later = " ".join(c.source for c in cells[i + 1:] if c.cell_type == "code")
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
    assert used >= {"wsgi_vs_asgi", "timelines", "blocking", "threadpool", "gil", "workers",
                    "open_vs_closed", "client_ceiling"}


def test_notebooks_match_their_generator():
    done = subprocess.run([sys.executable, str(FOLDER / "_build.py"), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_notebook_code_passes_ruff():
    pytest.importorskip("ruff")
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--quiet", *map(str, PATHS)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


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
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"),
        nbformat.v4.new_code_cell("1 / 0"),
        nbformat.v4.new_code_cell("print('never runs')"),
    ])
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    done = nbrun.execute(path, quick=True)
    assert done.error and "ZeroDivisionError" in done.error
    assert done.notebook.cells[0].outputs[0]["text"].strip() == sys.executable  # the kernel is this venv's Python
    assert not done.notebook.cells[2].get("outputs")
    html = nbrun.to_html(done, tmp_path / "out")
    assert "ZeroDivisionError" in html.read_text(encoding="utf-8")
    assert read(path).cells[1].get("outputs") == [], "the source notebook is never modified"


@pytest.mark.notebooks
@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", PATHS, ids=LESSONS)
def test_notebook_runs_in_quick_mode(path):
    done = nbrun.execute(path, quick=True, cell_timeout=QUICK_BUDGET_S * 2)
    assert done.error is None, f"{path.name} failed:\n{done.error[-3000:]}"
    errors = [o for c in done.notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    images = [o for c in done.notebook.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert images, f"{path.name} drew no chart"
    assert done.seconds < QUICK_BUDGET_S, f"{path.name} took {done.seconds:.0f} s in quick mode"


@pytest.mark.notebooks
def test_conclab_notebooks_writes_html(tmp_path, capsys):
    assert main(["notebooks", "--out", str(tmp_path), "--only", "01", "--quick"]) == 0
    page = tmp_path / "01-sync-vs-async.html"
    assert page.exists() and "one after another" in page.read_text(encoding="utf-8")
    assert "ok in" in capsys.readouterr().out
