"""Every number the lessons state has a source the suite
checks (conclab.teaching.claims, docs/claims.md)."""

import json
import shutil
from pathlib import Path

import pytest

from conclab.base.paths import ROOT
from conclab.teaching import claims
from conclab.teaching.claims import Block, check, numbers_in


def _report(problems) -> str:
    return "\n".join(str(p) for p in problems)


def test_every_number_in_the_prose_has_a_source_and_every_claim_holds():
    problems = check(ROOT)
    assert not problems, (
        f"{len(problems)} numbers without a good source (see docs/claims.md):\n{_report(problems)}"
    )


@pytest.fixture
def scratch(tmp_path) -> Path:
    """A copy of the prose and the committed data, to break."""
    for path in claims.scope(ROOT):
        target = tmp_path / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    shutil.copytree(ROOT / "figures" / "data", tmp_path / "figures" / "data")
    return tmp_path


def test_a_made_up_number_in_a_notebook_fails_naming_the_file_and_sentence(scratch):
    notebook = scratch / "notebooks" / "02-wsgi-vs-asgi.py"
    text = notebook.read_text()
    marker = "# %% [markdown]\n"
    cut = text.index(marker) + len(marker)
    notebook.write_text(
        text[:cut] + "# Uvicorn serves 4,321 requests per second here.\n#\n" + text[cut:]
    )
    problems = [p for p in check(scratch, [notebook])]
    made_up = [p for p in problems if "4,321" in p.message]
    assert len(made_up) == 1, _report(problems)
    assert made_up[0].path == "notebooks/02-wsgi-vs-asgi.py"
    assert "Uvicorn serves 4,321 requests per second here." in made_up[0].message


def test_changed_committed_data_fails_naming_the_sentence(scratch):
    before = check(scratch, [scratch / "docs" / "reliability.md"])
    path = scratch / "figures" / "data" / "nginx_memory.json"
    doc = json.loads(path.read_text())
    for case in doc["cases"][1:]:
        case["bytes_per_client"] *= 3  # a re-measure that moved the figure
    path.write_text(json.dumps(doc))
    after = [p for p in check(scratch, [scratch / "docs" / "reliability.md"]) if p not in before]
    assert after, "tripling the measured per-client memory went unnoticed"
    assert all(
        p.path == "docs/reliability.md" and "committed data say nginx_memory.json" in p.message
        for p in after
    ), _report(after)
    assert any('"About 10 KB per idle connection' in p.message for p in after), _report(after)
    assert any('"| 1,000 | 14.9 MB | 9.8 KB |"' in p.message for p in after), _report(after)


def test_a_package_upgrade_that_changes_a_default_fails_with_the_sentence_to_update(monkeypatch):
    read, what = claims.PACKAGE_FACTS["anyio.thread_tokens"]
    monkeypatch.setitem(claims.PACKAGE_FACTS, "anyio.thread_tokens", (lambda: 64, what))
    problems = [p for p in check(ROOT) if "AnyIO" in p.message]
    assert problems, "a changed AnyIO default was not noticed"
    assert all("is 64, not 40: update" in p.message and '"' in p.message for p in problems), (
        _report(problems)
    )


@pytest.mark.parametrize("name", sorted(claims.PACKAGE_FACTS))
def test_each_package_fact_reads_a_number_from_the_installed_package(name):
    read, _ = claims.PACKAGE_FACTS[name]
    value = read()
    assert isinstance(value, int | float) and not isinstance(value, bool)


def _block(text: str) -> Block:
    return Block("x.md", 1, [(i, line) for i, line in enumerate(text.splitlines(), 1)])


@pytest.mark.parametrize(
    "text",
    [
        "Cal Paterson's benchmark (2020).",
        "notebook 02, 03 and 07",
        "see lab 05",
        "PEP 703",
        "Gunicorn 27 answers",
        "aiohttp 3.9 and later",
        "Python 3.14",
        "version 3.14.5",
        "a 503 beyond it",
        "1. Start the server",
        "## 4. The cliff",
        "[01-sync-vs-async](01-sync-vs-async.ipynb)",
        "run `conclab bench --concurrency 64`",
        "issue #304",
    ],
)
def test_labels_years_versions_statuses_and_code_need_no_source(text):
    assert [n for n in numbers_in(_block(text)) if not n.allowed] == []


@pytest.mark.parametrize(
    "text",
    [
        "the loop stalls 187 ms",
        "a 500 ms wait",
        "about 18 minutes",
        "1,000 connections",
        "40 tokens",
        "2.80 times",
    ],
)
def test_a_measured_or_borrowed_number_needs_a_source(text):
    assert [n.text for n in numbers_in(_block(text)) if not n.allowed]


def test_a_marker_is_checked_against_the_data_to_the_digits_written(tmp_path):
    data = tmp_path / "figures" / "data"
    data.mkdir(parents=True)
    (data / "x.json").write_text(
        json.dumps(
            {"points": [{"series": "a b", "x": 1, "ms": 41.4}, {"series": "c", "x": 2, "ms": 8.04}]}
        )
    )
    doc = tmp_path / "README.md"
    doc.write_text(
        "It took 41 ms. <!-- claim: 41 = x.json:points[series=a b,x=1].ms -->\n\n"
        "It took 42 ms. <!-- claim: 42 = x.json:points[series=a b].ms -->\n\n"
        "About 40 ms. <!-- claim: 40 = x.json:points[0].ms ±5% -->\n\n"
        "Between 8.0 and 41.4 ms. <!-- claim: 8.0 = "
        "min(x.json:points[*].ms); 41.4 = max(x.json:points.*.ms) -->\n\n"
        "0.0414 s. <!-- claim: 0.0414 = x.json:points[0].ms /1000 -->\n\n"
        "A stale one. <!-- claim: 7 = x.json:points[0].ms -->\n\n"
        "Broken <!-- claim: 41 ms from the data -->\n"
    )
    problems = check(tmp_path, [doc])
    text = _report(problems)
    assert len(problems) == 3, text
    assert 'x.json:points[series=a b].ms = 41.4, not 42: update: "It took 42 ms."' in text
    assert 'a marker claims 7, which its paragraph does not state: "A stale one."' in text
    assert "cannot read the marker part '41 ms from the data'" in text


def test_a_file_source_must_still_hold_the_number(tmp_path):
    (tmp_path / "servers").mkdir()
    (tmp_path / "servers" / "nginx.conf").write_text(
        "# nginx waits 60 s\nclient_header_timeout 60s;\n"
    )
    doc = tmp_path / "README.md"
    doc.write_text(
        "nginx waits 60 s. <!-- claim: 60 = file:servers/nginx.conf -->\n\n"
        "It waits 75 s. <!-- claim: 75 = file:servers/nginx.conf -->\n"
    )
    problems = check(tmp_path, [doc])
    assert [p.line for p in problems] == [3], _report(problems)
    assert "no longer holds 75" in problems[0].message


def test_a_ratio_of_two_data_is_checked(tmp_path):
    data = tmp_path / "figures" / "data"
    data.mkdir(parents=True)
    (data / "c.json").write_text(
        json.dumps(
            {
                "points": [
                    {"rate": 200, "us": [340, 350, 360]},
                    {"rate": 1000, "us": [120, 124, 130]},
                ]
            }
        )
    )
    doc = tmp_path / "README.md"
    doc.write_text(
        "It costs 2.82 times more. <!-- claim: 2.82 = ratio(median(c.json:points[rate=200].us.*), "
        "median(c.json:points[rate=1000].us.*)) -->\n\nOr 4 "
        "times. <!-- claim: 4 = ratio(c.json:points.0.us.0, "
        "c.json:points.1.us.0) -->\n"
    )
    problems = check(tmp_path, [doc])
    assert [p.line for p in problems] == [3], _report(problems)


def test_arithmetic_in_the_prose_is_checked(tmp_path):
    doc = tmp_path / "README.md"
    doc.write_text(
        "X = 10 / 0.05 s = 200 req/s. <!-- claim: 200 = calc:10 / 0.05 -->\n\n"
        "X = min(16, 4) / 0.1 s = 40 req/s. <!-- claim: 40 = calc:min(16, 4) / 0.1 -->\n\n"
        "1,000 / 1.0455 s = 965 req/s. <!-- claim: 965 = calc:1,000 / 1.0455 -->\n"
    )
    problems = check(tmp_path, [doc])
    wrong = [
        p for p in problems if "has no source" not in p.message
    ]  # the inputs need sources of their own
    assert [p.line for p in wrong] == [5] and "= 956.48, not 965" in wrong[0].message, _report(
        problems
    )


def test_the_examples_in_the_format_doc_pass_the_check(tmp_path):
    examples = [
        line.strip()
        for line in (ROOT / "docs" / "claims.md").read_text().splitlines()
        if line.startswith("    ") and "<!-- claim:" in line
    ]
    assert len(examples) >= 2
    shutil.copytree(ROOT / "figures" / "data", tmp_path / "figures" / "data")
    (tmp_path / "src" / "conclab" / "figures").mkdir(parents=True)
    shutil.copy(
        ROOT / "src" / "conclab" / "figures" / "fastapi.py",
        tmp_path / "src" / "conclab" / "figures",
    )
    doc = tmp_path / "README.md"
    doc.write_text("\n\n".join(examples) + "\n")
    assert check(tmp_path, [doc]) == []
