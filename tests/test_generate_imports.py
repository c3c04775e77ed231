"""The generate path imports only what it uses: no pandas, torch, matplotlib, or (for in-process runs without a
bar) tqdm and multiprocessing in a `generate` process."""

import json
import subprocess
import sys

CODE = """
import sys, json
from benchgen.cli import main
sys.argv = ["benchgen", "generate", {task!r}, "--out", {out!r}, "--no-progress"] + {extra!r}
try:
    main()
except SystemExit as e:
    assert not e.code, e.code
print(json.dumps(sorted(m for m in ("pandas", "torch", "matplotlib", "transformers", "datasets", "tqdm", "multiprocessing", "pyarrow.dataset") if m in sys.modules)))
"""


def test_generate_imports_no_pandas_or_torch(tmp_path):
    for task, extra in (("khop", []), ("addition", ["--preset", "addition-small"]),
                        ("induction", ["--train-per-cell", "50", "--test-per-cell", "50", "--valid-per-cell", "10"])):
        out = str(tmp_path / task)
        proc = subprocess.run([sys.executable, "-c", CODE.format(task=task, out=out, extra=extra)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert json.loads(proc.stdout.strip().splitlines()[-1]) == [], (task, proc.stdout)


def test_pandas_still_usable_after_the_api_generates():
    """The hiding is the CLI's alone: the Python API leaves pyarrow's pandas interop working."""
    code = ("import benchgen, pyarrow as pa\n"
            "splits = benchgen.generate('khop', output='arrow')\n"
            "print(type(pa.table({'a': [1]}).to_pandas()).__name__)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "DataFrame"
