"""Every printed "next:" hint runs as printed, in order, in a fresh folder (issue 22, item 3).

generate -> (audit, export, train) -> evaluate -> (baselines, leaderboard): each command's hints are
parsed from its stderr and run next; training gets ``--steps 2`` appended (tiny steps), nothing else
is changed. A second pass in the same folder (which now holds runs, evaluations and a board) must
also run as printed: hints never point at an existing output.
"""

from __future__ import annotations

import shlex
import subprocess
import sys

from click.testing import CliRunner

from benchgen.cli import main

GENERATE = ["generate", "khop", "--preset", "khop-small", "--train-per-hop", "60", "--valid-per-hop", "10",
            "--test-per-hop", "10", "--systematic-per-hop", "10", "--out", "data/khop"]


FOLLOWED = ("generate", "train", "evaluate")  # export's hints lead to lm_eval with a checkpoint (test_lm_eval.py)


def _hints(stderr: str) -> list[str]:
    lines = stderr.splitlines()
    start = lines.index("next:") + 1
    return [line.strip() for line in lines[start:] if line.startswith("  ")]


def _run(command: str) -> str:
    """Run one printed command (benchgen in-process, python as a process); its stderr."""
    words = shlex.split(command)
    if words[0] == "python":
        proc = subprocess.run([sys.executable, *words[1:]], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{command}\n{proc.stderr}"
        return proc.stderr
    assert words[0] == "benchgen", command
    args = words[1:] + (["--steps", "2"] if words[1] == "train" else [])
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, f"{command}\n{res.output}"
    return res.stderr


def _kind(command: str) -> str:
    words = shlex.split(command)
    return words[1] if words[0] == "benchgen" else words[0]


def _chain() -> list[str]:
    """Run generate and then every hint printed by generate, train and evaluate, depth first; the commands run."""
    ran = []
    pending = [shlex.join(["benchgen", *GENERATE])]
    while pending:
        command = pending.pop(0)
        stderr = _run(command)
        ran.append(command)
        if _kind(command) in FOLLOWED and "next:" in stderr.splitlines():
            pending = _hints(stderr) + pending
    return ran


def test_hint_chain_runs_as_printed_twice_in_one_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = _chain()
    kinds = [_kind(c) for c in first]
    assert kinds == ["generate", "audit", "export", "train", "evaluate", "baselines", "leaderboard", "python"], first
    assert shlex.split(first[3])[shlex.split(first[3]).index("--out") + 1] == "runs/khop-looped"
    assert (tmp_path / "board.html").is_file()
    assert (tmp_path / "eval" / "khop-looped" / "results.json").is_file()
    assert any((tmp_path / "floors" / "khop").glob("*/results.json"))

    # the folder now holds a run, an evaluation, floors and a board: the hints pick new names (the
    # generate step itself is re-run with --overwrite, as a user regenerating would)
    GENERATE.append("--overwrite")
    try:
        second = _chain()
    finally:
        GENERATE.remove("--overwrite")
    kinds = [_kind(c) for c in second]
    assert kinds == ["generate", "audit", "export", "train", "evaluate", "leaderboard", "python"], second
    assert "runs/khop-looped-2" in second[3] and "data/khop-lm-eval-2" in second[2]
    assert "eval/khop-looped-2" in second[4]
    assert "eval/khop-looped-2/results.json floors/khop --out board.html --overwrite" in second[5]
