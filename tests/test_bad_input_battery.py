"""The last faults of the bad-input battery (issue 22, item 12): each is one `error:` line, exit 2,
nothing written and existing data intact. (python: models calling sys.exit and non-numeric margins:
tests/test_model_failures.py; SIGINT/SIGTERM to train: tests/test_train_signals.py.)"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_safety import TINY, assert_one_line, cli, hidden

from benchgen import atomic
from benchgen.dataset import load


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("battery")
    assert cli("generate", "khop", *TINY, "--seed", "5", "--out", root / "d")[0] == 0
    assert cli("predict-oracle", root / "d", "--out", root / "p.jsonl")[0] == 0
    assert cli("predict-oracle", root / "d", "--token-ids", "--out", root / "t.parquet")[0] == 0
    return root


@pytest.mark.parametrize("overwrite", [False, True])
def test_disk_filling_mid_write_is_one_line(tiny, tmp_path, monkeypatch, overwrite):
    """numpy's and pyarrow's short writes on a full disk raise OSError("N requested and M written")
    without an errno (a real 6 MiB tmpfs gave exactly that); the old dataset stays, nothing is left over."""
    out = tmp_path / "d"
    if overwrite:
        assert cli("generate", "khop", *TINY, "--seed", "5", "--out", out)[0] == 0
    real = np.save

    def short_write(file, arr, *a, **k):
        if ".spill-" in str(file):
            raise OSError(f"{arr.nbytes} requested and {arr.nbytes // 3} written")
        return real(file, arr, *a, **k)

    monkeypatch.setattr(np, "save", short_write)
    code, _, err, exc = cli("generate", "khop", *TINY, "--seed", "6", "--out", out, *(["--overwrite"] * overwrite))
    assert_one_line(code, err, exc, match="write failed: only ")
    assert "bytes written (disk full?)" in err
    assert hidden(tmp_path) == []
    if overwrite:
        assert load(out).manifest["seed"] == 5
    else:
        assert not out.exists()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _kill_inside_swap(out) -> str:
    """What a process killed between moving the old dataset aside and moving the new one in leaves."""
    old = out.parent / f".{out.name}.old-{_dead_pid()}-{atomic._host_tag()}-0badc0de"
    out.rename(old)
    return old.name


def test_read_commands_restore_a_dataset_left_aside_by_a_kill(tiny, tmp_path):
    out = tmp_path / "d"
    assert cli("generate", "khop", *TINY, "--seed", "5", "--out", out)[0] == 0
    fingerprint = load(out).fingerprint
    for command in (["info"], ["audit"], ["evaluate", "--predictions", tiny / "p.jsonl", "--out", tmp_path / "e"]):
        _kill_inside_swap(out)
        code, _, err, exc = cli(command[0], out, *command[1:])  # was: "does not exist"
        assert code == 0, err
        assert load(out).fingerprint == fingerprint and hidden(tmp_path) == []


def test_read_commands_say_where_the_previous_version_is(tiny, tmp_path, monkeypatch):
    out = tmp_path / "d"
    assert cli("generate", "khop", *TINY, "--seed", "5", "--out", out)[0] == 0
    name = _kill_inside_swap(out)

    def read_only(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(atomic, "rename_noreplace", read_only)  # e.g. a read-only parent directory
    code, _, err, exc = cli("info", out)
    assert_one_line(code, err, exc, match=f"does not exist; an interrupted write left the previous version at "
                                          f"{tmp_path / name}")
    assert f"mv {tmp_path / name} {out}" in err


def _corrupt_jsonl(src, dst, field: str) -> None:
    """Row 4's ``field`` value starts with two bytes that are not UTF-8."""
    lines = src.read_bytes().split(b"\n")
    key = f'"{field}":"'.encode()
    lines[4] = lines[4].replace(key, key + b"\xff\xfe", 1)
    dst.write_bytes(b"\n".join(lines))


@pytest.mark.parametrize("field", ["id", "prediction"])
def test_invalid_utf8_in_jsonl_is_one_line(tiny, tmp_path, field):
    bad = tmp_path / "bad.jsonl"
    _corrupt_jsonl(tiny / "p.jsonl", bad, field)
    assert bad.read_bytes() != (tiny / "p.jsonl").read_bytes()
    code, _, err, exc = cli("evaluate", tiny / "d", "--predictions", bad, "--out", tmp_path / "e")
    assert_one_line(code, err, exc, match=f"column '{field}': row 4 is not valid UTF-8 text")
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("token", [-1, 10**6])
def test_token_ids_outside_the_vocabulary_are_refused(tiny, tmp_path, token):
    table = pq.read_table(tiny / "t.parquet")
    preds = table.column("prediction").to_pylist()
    preds[7] = [preds[7][0], token]
    bad = tmp_path / "bad.parquet"
    pq.write_table(table.set_column(table.schema.get_field_index("prediction"), "prediction",
                                    pa.array(preds, pa.list_(pa.int32()))), bad)
    size = len(load(tiny / "d").vocab)
    code, _, err, exc = cli("evaluate", tiny / "d", "--predictions", bad, "--out", tmp_path / "e")
    row_id = table.column("id")[7].as_py()
    assert_one_line(code, err, exc, match=f"row 7 (id {row_id}): token id {token} is outside the dataset "
                                          f"vocabulary of {size} tokens (ids 0..{size - 1})")
    assert not (tmp_path / "e").exists()
