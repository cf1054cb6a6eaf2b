"""`zoo.fileio`: result files are written whole or not at all, with the user's mode."""

import csv
import json
import os
import pathlib
import stat

import pytest

from zoo import fileio


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_completed_write_replaces_the_file_with_the_users_mode(tmp_path):
    target = tmp_path / "table.md"
    target.write_text("old")
    with fileio.atomic_output(target, suffix=".md") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".md" and tmp != target
        tmp.write_text("new")
        assert target.read_text() == "old"  # nothing moves before the block ends
    assert target.read_text() == "new"
    assert _mode(target) == fileio.new_file_mode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.md"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    target = tmp_path / "model.keras"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with fileio.atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]
    with pytest.raises(RuntimeError):
        with fileio.atomic_output(tmp_path / "new.json"):
            raise RuntimeError("no file at all")
    assert not (tmp_path / "new.json").exists()


def test_write_csv_takes_every_key_in_order_and_leaves_none_empty(tmp_path):
    path = tmp_path / "runs.csv"
    fileio.write_csv(path, [{"a": 1, "b": None}, {"c": 2.5, "a": 3}])
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [["a", "b", "c"], ["1", "", ""], ["3", "", "2.5"]]


def test_write_json_and_write_text(tmp_path):
    fileio.write_json(tmp_path / "a.json", {"path": pathlib.Path("x"), "n": 1})
    assert json.loads((tmp_path / "a.json").read_text()) == {"path": "x", "n": 1}
    fileio.write_json(tmp_path / "b.json", {"b": 1, "a": 2}, indent=None, sort_keys=True)
    assert (tmp_path / "b.json").read_text() == '{"a": 2, "b": 1}'
    fileio.write_text(tmp_path / "c.txt", "é\n", sync=True)
    assert (tmp_path / "c.txt").read_text(encoding="utf-8") == "é\n"
