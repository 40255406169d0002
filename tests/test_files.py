"""Atomic writes: a file is replaced whole or not at all, and a reader never sees half of one."""

import json
import os
import threading

import pytest

from conclab.base.files import atomic_write


def test_saving_replaces_an_old_file_rather_than_writing_into_it(tmp_path):
    path = tmp_path / "run.json"
    path.write_text("old\n")
    before = os.stat(path).st_ino
    atomic_write(path, "new\n")
    assert path.read_text() == "new\n"
    assert os.stat(path).st_ino != before  # a new file renamed over the old one


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{"ok": true}\n')
    with pytest.raises(TypeError):
        atomic_write(path, 12345)  # not text: fails while writing
    assert path.read_text() == '{"ok": true}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_a_reader_never_sees_a_half_written_file(tmp_path):
    path = tmp_path / "run.json"
    docs = [{"n": i, "pad": "x" * 200_000 * (1 + i % 3)} for i in range(40)]
    atomic_write(path, json.dumps(docs[0]))
    done = threading.Event()
    seen, torn = [], []

    def reader():
        while not done.is_set():
            text = path.read_text()
            try:
                seen.append(json.loads(text)["n"])
            except ValueError:
                torn.append(len(text))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for doc in docs:
            atomic_write(path, json.dumps(doc))
    finally:
        done.set()
        thread.join(10)
    assert torn == []
    assert len(seen) > 0
