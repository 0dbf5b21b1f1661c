"""Atomic writes: unique temporary names beside the target, nothing partial left behind, the old file kept."""

from __future__ import annotations

import json
import math
import os
import stat
import threading

import numpy as np
import pytest

from qmedgen import fileio
from qmedgen.fileio import atomic_open, atomic_path, read_json, write_json, write_text


def test_temporary_names_are_unique_and_beside_the_target(tmp_path):
    target = tmp_path / "out" / "a.json"
    with atomic_path(target) as t1, atomic_path(target) as t2:
        assert t1 != t2 and t1.parent == t2.parent == target.parent  # same directory: the rename is atomic
        assert t1.name.startswith(".a.json.") and t1.exists() and not target.exists()
        t1.write_text("1")
        t2.write_text("2")
    assert target.read_text() == "1" and sorted(p.name for p in target.parent.iterdir()) == ["a.json"]


def test_no_partial_file_and_original_kept_on_exception(tmp_path):
    target = tmp_path / "a.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_open(target) as fh:
        fh.write("half of the new")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    fresh = tmp_path / "never.json"
    with pytest.raises(TypeError):
        write_json(fresh, {"x": object()})  # fails while serialising: nothing is created
    assert not fresh.exists() and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_a_failed_rename_keeps_the_original(tmp_path, monkeypatch):
    target = tmp_path / "a.txt"
    write_text(target, "old")

    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(fileio.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_text(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_concurrent_writers_each_leave_a_whole_file(tmp_path):
    target = tmp_path / "shared.json"
    payloads = [{"writer": i, "data": list(range(2000))} for i in range(8)]
    threads = [threading.Thread(target=write_json, args=(target, p)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert read_json(target) in payloads and [p.name for p in tmp_path.iterdir()] == ["shared.json"]


def test_files_get_the_umask_mode_not_mkstemps_0600(tmp_path):
    mask = os.umask(0o022)
    try:
        assert fileio._file_mode() == 0o644
    finally:
        os.umask(mask)
    write_text(tmp_path / "a.txt", "x")
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_write_json_formats_and_binary_open(tmp_path):
    p = write_json(tmp_path / "a.json", {"p": tmp_path, "arr": np.arange(3), "nan": math.nan}, indent=1)
    text = p.read_text()
    assert text.endswith("}\n") and '\n "arr": [\n  0,' in text and "NaN" in text
    strict = write_json(tmp_path / "b.json", {"x": [math.inf, 1.5], "y": {"z": -math.inf}}, nan_to_null=True)
    assert json.loads(strict.read_text(), parse_constant=lambda c: pytest.fail(c)) == {"x": [None, 1.5],
                                                                                      "y": {"z": None}}
    with atomic_open(tmp_path / "c.npy", "wb") as fh:
        np.save(fh, np.ones(2))
    assert np.load(tmp_path / "c.npy").tolist() == [1.0, 1.0]  # no ".npy" appended to a temporary name
    with pytest.raises(ValueError, match="mode"), atomic_open(tmp_path / "d.txt", "a"):
        pass
