"""The run summary as a typed record: every saved summary reads back, and saves back unchanged."""

import dataclasses
import json

import pytest

from conclab.base.paths import FIGURES_DIR
from conclab.figures.experiment import read_data
from conclab.measuring.results import to_json
from conclab.measuring.summary import OPTIONAL, Percentiles, Summary


def committed_data():
    """The experiments' data: files with measured points (not tables such as timing.json)."""
    paths = [
        p
        for p in sorted((FIGURES_DIR / "data").glob("*.json"))
        if "points" in json.loads(p.read_text())
    ]
    assert paths, "no committed figures/data/*.json"
    return paths


def saved_summaries(doc):
    """Every summary a saved point holds: its own, its probe's, its probes'."""
    out = [doc["summary"]]
    if doc.get("probe"):
        out.append(doc["probe"])
    out.extend((doc.get("probes") or {}).values())
    return out


@pytest.mark.parametrize("path", committed_data(), ids=lambda p: p.stem)
def test_every_committed_summary_loads_and_saves_back_unchanged(path):
    raw = json.loads(path.read_text())
    for point in raw["points"]:
        for saved in saved_summaries(point):
            summary = Summary.from_dict(saved)
            assert summary.extra == {}, (
                f"{path.name}: keys the record does not know: {sorted(summary.extra)}"
            )
            # NaN is saved as null and read back as None: the dicts compare equal.
            assert summary.to_dict() == saved
            assert isinstance(summary.throughput_rps, float) and isinstance(
                summary.latency_ms, Percentiles
            )
    # The whole file, read with typed summaries and written again, is the same text.
    assert to_json(read_data(path)) == path.read_text()


def a_summary(**changes):
    """A committed summary, without the optional fields (unset, as in older data)."""
    path = committed_data()[0]
    return Summary.from_dict(json.loads(path.read_text())["points"][0]["summary"]).replace(
        **{**dict.fromkeys(OPTIONAL), **changes}
    )


def test_an_unknown_key_is_kept_in_extra_and_written_back():
    saved = {**a_summary().to_dict(), "from_a_newer_version": {"x": 1}}
    summary = Summary.from_dict(saved)
    assert summary.extra == {"from_a_newer_version": {"x": 1}}
    assert summary.to_dict() == saved


def test_a_summary_saved_before_the_later_fields_still_loads():
    old = a_summary().to_dict()
    for key in ("client_wait", "handler_ms", "outside_ms", "throughput_spread"):
        del old[key]
    summary = Summary.from_dict(old)
    assert summary.client_wait is None and summary.throughput_spread is None
    assert summary.handler_ms.p50 is None and summary.outside_ms.max is None


def test_optional_fields_are_saved_only_when_set():
    plain = a_summary()
    assert all(getattr(plain, name) is None for name in OPTIONAL)
    assert not set(OPTIONAL) & set(plain.to_dict())
    filled = plain.replace(
        server_cpu_us_per_request=612.5,
        runner="granian",
        server_python="3.13.1",
        server_gil_enabled=False,
        client_placement="pinned to core 1",
    )
    saved = filled.to_dict()
    assert {name: saved[name] for name in OPTIONAL} == {
        "server_cpu_us_per_request": 612.5,
        "runner": "granian",
        "server_python": "3.13.1",
        "server_gil_enabled": False,
        "client_placement": "pinned to core 1",
    }
    assert Summary.from_dict(json.loads(to_json(filled))) == filled


def test_a_summary_cannot_be_changed_in_place():
    with pytest.raises(dataclasses.FrozenInstanceError):
        a_summary().throughput_rps = 1.0  # type: ignore[misc]


def test_a_misspelt_field_is_an_error_not_a_silent_none():
    with pytest.raises(AttributeError):
        a_summary().throughput  # noqa: B018 - the attribute access is the test


def test_every_field_says_its_unit():
    import inspect

    from conclab.measuring import summary as module

    source = inspect.getsource(module.Summary)
    for f in dataclasses.fields(Summary):
        if f.name == "extra":
            continue
        line = next(line for line in source.splitlines() if line.strip().startswith(f"{f.name}:"))
        assert "#" in line, f"Summary.{f.name} has no comment saying what it is and its unit"
