"""Saved runs: per-request records as CSV, a JSON summary beside them, written atomically."""

import json
import os

import pytest

from conclab.base import system
from conclab.base.specs import FIELDS, LoadSpec, ServerSpec
from conclab.measuring.driver import LoadResult, run_load
from conclab.measuring.results import (
    read_json,
    read_records,
    save_run,
    to_json,
    write_records,
)
from conclab.processes.launcher import serve

SPEC = ServerSpec("asgi")


def strict_json(text):
    """Parse JSON that must be portable: NaN and Infinity are not JSON."""

    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def real_run():
    """A small real run: 30 requests to a real Uvicorn server."""
    with serve(SPEC) as server:
        result = run_load(server.url, path="/io?ms=5", concurrency=3, requests=30, progress=False)
    return result


def empty_result(**kw):
    load = LoadSpec(path="/io?ms=10", concurrency=1, duration=1.0)
    return LoadResult(
        url="http://127.0.0.1:1",
        load=load,
        records=[],
        started_ns=0,
        window=(0, 10**9),
        finished_ns=10**9,
        **kw,
    )


def test_save_run_writes_the_records_csv_and_the_json_summary(tmp_path, real_run):
    doc = save_run(
        real_run,
        json_path=tmp_path / "run.json",
        records_path=tmp_path / "run.csv",
        server={"spec": SPEC.to_dict(), "label": SPEC.label},
    )
    saved = strict_json((tmp_path / "run.json").read_text())
    assert saved == strict_json(to_json(doc))
    assert saved["records_file"] == str(tmp_path / "run.csv")
    assert len(read_records(tmp_path / "run.csv")) == saved["sent"] == 30


def test_the_json_says_what_was_measured_on_what_and_when(tmp_path, real_run):
    save_run(
        real_run,
        json_path=tmp_path / "run.json",
        server={"spec": SPEC.to_dict(), "label": SPEC.label},
    )
    doc = read_json(tmp_path / "run.json")
    assert doc["server"]["spec"]["kind"] == "asgi"
    assert doc["server"]["spec"]["threadpool"] == 40
    assert doc["load"]["path"] == "/io?ms=5"
    assert doc["load"]["concurrency"] == 3
    assert doc["load"]["requests"] == 30
    assert doc["machine"]["cores"] == os.cpu_count()
    assert doc["machine"]["python"].count(".") == 2
    assert doc["machine"]["packages"]["httpx"]
    assert doc["time"][:2] == "20" and "T" in doc["time"]
    assert doc["status"] == "complete"
    assert doc["completed"] == 30
    assert doc["url"] == real_run.url


def test_records_round_trip_through_csv(tmp_path, real_run):
    write_records(tmp_path / "r.csv", real_run.records)
    assert read_records(tmp_path / "r.csv") == list(real_run.records)


def test_records_with_awkward_text_round_trip(tmp_path):
    big = 2**62 + 3  # nanosecond stamps must not lose digits through a float
    records = [
        (big, big + 1, big + 2, 0, 'odd, "quoted"\nerror', "/io?ms=1&x=a,b", 0, 0, 0, 0),
        (1, 2, 3, 200, "", "/hello", 123, 456, 7, 8),
    ]
    write_records(tmp_path / "r.csv", records)
    assert read_records(tmp_path / "r.csv") == records


def test_the_csv_header_names_the_record_fields(tmp_path):
    write_records(tmp_path / "r.csv", [])
    assert (tmp_path / "r.csv").read_text().splitlines() == [",".join(FIELDS)]
    assert read_records(tmp_path / "r.csv") == []


def test_reading_a_file_that_is_not_records_is_a_clear_error(tmp_path):
    (tmp_path / "other.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match="not a records file"):
        read_records(tmp_path / "other.csv")


def test_nan_and_infinity_are_written_as_null(tmp_path):
    save_run(
        empty_result(),
        json_path=tmp_path / "empty.json",
        extra={"prediction": {"latency_ms": float("inf")}},
    )
    text = (tmp_path / "empty.json").read_text()
    doc = strict_json(text)  # would raise on NaN/Infinity
    assert doc["latency_ms"]["p50"] is None
    assert doc["latency_ms"]["mean"] is None
    assert doc["prediction"]["latency_ms"] is None


def test_an_interrupted_run_is_marked_interrupted(tmp_path):
    doc = save_run(empty_result(interrupted=True), json_path=tmp_path / "i.json")
    assert doc["status"] == "interrupted"
    assert read_json(tmp_path / "i.json")["status"] == "interrupted"


def test_a_failed_run_is_marked_failed_with_its_reason(tmp_path):
    save_run(empty_result(failed="the server refused connections"), json_path=tmp_path / "f.json")
    doc = read_json(tmp_path / "f.json")
    assert doc["status"] == "failed"
    assert doc["failed"] == "the server refused connections"


def test_saving_leaves_no_temporary_files(tmp_path, real_run):
    out = tmp_path / "deep" / "folder"  # missing folders are made
    save_run(real_run, json_path=out / "run.json", records_path=out / "run.csv")
    assert sorted(p.name for p in out.iterdir()) == ["run.csv", "run.json"]


@pytest.mark.skipif(
    not system.has_cgroups(), reason="cgroup CPU quotas are Linux's: this system has none"
)
def test_the_machine_names_its_usable_cores_under_a_cgroup_quota(monkeypatch, tmp_path):
    from conclab.measuring.results import machine

    (tmp_path / "cpu.max").write_text("100000 100000\n")  # 1 CPU
    monkeypatch.setenv("CONCLAB_CGROUP_ROOT", str(tmp_path))
    m = machine()
    assert m["cgroup_cpu_quota"] == 1.0
    assert m["usable_cores"] == 1
    assert m["affinity_cores"] == len(system.cpu_ids())
