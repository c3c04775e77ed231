"""Python API: in-memory generation, load, evaluate, per-item reward, plugins, --config, CLI JSON.

Every check compares against an independent route: the CLI's files (fingerprints, shard bytes),
the evaluator's own cell counts, or a subprocess that sees only what an installed package sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

import benchgen
import benchgen.api
from benchgen import registry
from benchgen.cli import main
from benchgen.dataset import load
from benchgen.errors import BenchgenError

KHOP = {"structure": "permutation", "num_entities": 16, "num_relations": 3, "out_degree": 3,
        "ood_fraction": 0.25, "train_hops": "2", "test_hops": "3", "train_per_hop": 40,
        "valid_per_hop": 5, "test_per_hop": 6, "systematic_per_hop": 6, "seed": 3}
SPLITS = {"train", "valid", "test_id", "test_systematic", "test_depth"}


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory) -> Path:
    """The same dataset written by the CLI (the reference the in-memory API must match)."""
    out = tmp_path_factory.mktemp("api") / "khop"
    args = [x for k, v in KHOP.items() for x in (f"--{k.replace('_', '-')}", str(v))]
    res = CliRunner().invoke(main, ["generate", "khop", *args, "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    return out


def test_generate_in_memory_matches_cli_files_and_writes_nothing(on_disk, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # any temp file would land here
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ds = benchgen.generate("khop", output="benchgen", **KHOP)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temp dir
    ref = load(on_disk)
    assert ds.fingerprint == ref.fingerprint and ds.manifest["splits"] == ref.manifest["splits"]
    assert ds.manifest.get("validity") == ref.manifest.get("validity")
    for split in ref.splits:
        assert ds.table(split).equals(ref.table(split))
    assert ds.extra("kg.parquet").equals(ref.extra("kg.parquet"))
    # save() writes the CLI's bytes; the audit passes on the in-memory dataset too
    saved = load(ds.save(tmp_path / "saved"))
    assert saved.fingerprint == ref.fingerprint and saved.verify_hashes() == []
    assert benchgen.api.audit(ds) == []
    with pytest.raises(BenchgenError, match="already exists"):
        ds.save(tmp_path / "saved")


def test_generate_output_forms(on_disk):
    tables = benchgen.generate("khop", output="arrow", **KHOP)
    assert set(tables) == SPLITS and all(isinstance(t, pa.Table) for t in tables.values())
    datasets = pytest.importorskip("datasets")
    dd = benchgen.generate("khop", **KHOP)  # auto: datasets is installed here
    assert isinstance(dd, datasets.DatasetDict)
    assert set(dd) == SPLITS - {"valid"} | {"validation"}  # the Hub's split name
    assert set(dd["validation"]["split"]) == {"valid"}
    assert dd["test_depth"]["id"] == load(on_disk).table("test_depth")["id"].to_pylist()
    loaded = benchgen.load(on_disk, output="datasets")
    assert loaded["train"].num_rows == dd["train"].num_rows
    with pytest.raises(BenchgenError, match="output='nope'"):
        benchgen.load(on_disk, output="nope")
    with pytest.raises(BenchgenError, match="unknown task 'nope'"):
        benchgen.generate("nope")
    with pytest.raises(BenchgenError, match="option 'num-entities'"):
        benchgen.generate("khop", output="arrow", **{**KHOP, "num_entities": "many"})


def test_config_file_equals_options(on_disk, tmp_path):
    yaml_cfg = tmp_path / "khop.yaml"
    yaml_cfg.write_text("".join(f"{k.replace('_', '-')}: {json.dumps(v)}\n" for k, v in KHOP.items()))
    json_cfg = tmp_path / "khop.json"
    json_cfg.write_text(json.dumps({**KHOP, "out": str(tmp_path / "from-json")}))
    fp = load(on_disk).fingerprint
    assert benchgen.generate("khop", config=yaml_cfg, output="benchgen").fingerprint == fp
    assert benchgen.generate("khop", config=json_cfg, output="benchgen").fingerprint == fp  # "out" ignored
    runner = CliRunner()
    res = runner.invoke(main, ["generate", "khop", "--config", str(yaml_cfg), "--out", str(tmp_path / "y"),
                               "--no-progress"])
    assert res.exit_code == 0, res.output
    assert load(tmp_path / "y").fingerprint == fp
    assert "next:" in res.output and f"benchgen audit {tmp_path / 'y'}" in res.output
    res = runner.invoke(main, ["generate", "khop", "--config", str(json_cfg), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert load(tmp_path / "from-json").fingerprint == fp  # "out" from the file
    # a command-line option wins over the file
    res = runner.invoke(main, ["generate", "khop", "--config", str(yaml_cfg), "--seed", "4",
                               "--out", str(tmp_path / "s4"), "--no-progress"])
    assert res.exit_code == 0 and load(tmp_path / "s4").manifest["seed"] == 4
    bad = tmp_path / "bad.yaml"
    for text, msg in (("[1, 2]", "expected a mapping"), ("a: [", "not valid yaml"),
                      ("num_entitys: 3", "option 'num-entitys': unknown option")):
        bad.write_text(text)
        res = runner.invoke(main, ["generate", "khop", "--config", str(bad), "--out", str(tmp_path / "b")])
        assert res.exit_code == 2 and msg in res.output and "Traceback" not in res.output, res.output
    res = runner.invoke(main, ["generate", "khop", "--config", str(yaml_cfg)])
    assert res.exit_code == 2 and "give --out DIR" in res.output


def test_evaluate_accepts_tables_and_datasets(on_disk):
    datasets = pytest.importorskip("datasets")
    ds = load(on_disk)
    rows = [r for s in ("test_id", "test_depth") for r in ds.table(s).to_pylist()]
    preds = pa.table({"id": [r["id"] for r in rows],
                      "prediction": [r["answer"] if i % 3 else "<e_0>x" for i, r in enumerate(rows)]})
    from_table = benchgen.evaluate(on_disk, preds, model_name="m")
    # a datasets.Dataset with extra columns (the examples themselves), shuffled and filtered
    hf = datasets.Dataset(pa.Table.from_pylist(
        [{**r, "prediction": p} for r, p in zip(rows, preds["prediction"].to_pylist())]))
    hf = hf.shuffle(seed=0).filter(lambda r: True)
    from_hf = benchgen.evaluate(on_disk, hf, model_name="m")
    assert from_hf.cells.equals(from_table.cells)
    assert int(from_table.cells["correct"].sum()) == sum(1 for i in range(len(rows)) if i % 3)
    mem = benchgen.generate("khop", output="benchgen", **KHOP)
    assert benchgen.evaluate(mem, preds, model_name="m").cells.equals(from_table.cells)


def test_score_answer_agrees_with_the_evaluator(on_disk):
    from benchgen.evaluators import Normalization

    ds = load(on_disk)
    rows = ds.table("test_id").to_pylist()
    variants = ["{a}", " {a}\n", "{A}", "{a}{a}", "", "{a} x", "\t{a}"]
    preds = [v.format(a=r["answer"], A=r["answer"].upper()) for r, v in
             zip(rows, (variants[i % len(variants)] for i in range(len(rows))))]
    for norm in (Normalization(), Normalization(casefold=True), Normalization(strip=False)):
        res = benchgen.evaluate(on_disk, pa.table({"id": [r["id"] for r in rows], "prediction": preds}),
                                normalization=norm)
        rewards = [benchgen.score_answer(p, r, normalization=norm) for p, r in zip(preds, rows)]
        assert sum(rewards) == int(res.cells["correct"].sum())
        assert set(rewards) == {0.0, 1.0}
    r = rows[0]
    assert benchgen.score_answer(r["target_ids"], r) == 1.0
    assert benchgen.score_answer([*r["target_ids"], 0], r) == 0.0
    assert benchgen.score_answer(None, r) == 0.0
    assert benchgen.score_answer(f" {r['answer']} ", r["answer"]) == 1.0
    with pytest.raises(BenchgenError, match="target_ids"):
        benchgen.score_answer([1], r["answer"])
    # TRL: completions as text or as conversations, dataset columns as keyword arguments
    reward = benchgen.reward_function()
    conv = [[{"role": "assistant", "content": f"{r['answer']} "}] for r in rows[:2]]
    assert reward(conv + ["wrong"], answer=[r["answer"] for r in rows[:3]], prompt=["p"] * 3) == [1.0, 1.0, 0.0]
    assert benchgen.verl_compute_score("benchgen/khop", r["answer"] + "\n", r["answer"]) == 1.0
    for norm in (Normalization(), Normalization(casefold=True), Normalization(strip=False)):
        batch = benchgen.reward_function(norm)(preds, answer=[r["answer"] for r in rows])
        assert batch == [benchgen.score_answer(p, r, normalization=norm) for p, r in zip(preds, rows)]
    with pytest.raises(BenchgenError, match="2 completions but 1 answers"):
        reward(["a", "b"], answer=["a"])


def _plugin_site(root: Path) -> Path:
    """A tiny installed plugin package: a module plus a dist-info with entry points (what pip writes)."""
    site = root / "site"
    pkg = site / "bg_plugin"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent('''
        """A third-party task (addition under a new name) and adapter scheme for benchgen."""
        import dataclasses

        import pyarrow as pa
        from benchgen.tasks.addition import TASK as ADDITION

        TASK = dataclasses.replace(ADDITION, name="plugin_add",
                                   description="plugin task: multi-operand addition under another name")
        NAME = "old_style"  # the module interface of benchgen <= 0.1's plugins: refused with one line


        class Echo:
            """Answers every example with the text after 'echo:' in the spec."""

            supports_loops = False

            def __init__(self, text):
                self.name, self.text = f"echo-{text}", text

            def predict(self, examples, loops):
                return pa.table({"id": examples.column("id"),
                                 "prediction": pa.array([self.text] * examples.num_rows, pa.string())})


        def load(arg, **options):
            return Echo(arg)
    '''))
    (site / "bg_broken.py").write_text("from benchgen.tasks.addition import NO_SUCH_NAME\n")  # its own bug
    info = site / "bg_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bg-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[benchgen.tasks]\nplugin_add = bg_plugin:TASK\nkhop = bg_plugin:TASK\nold_style = bg_plugin\nbroken = bg_broken:TASK\n\n"
        "[benchgen.adapters]\necho = bg_plugin:load\n")
    return site


def test_entry_point_plugins_register_tasks_and_adapters(on_disk, tmp_path, monkeypatch):
    site = _plugin_site(tmp_path)
    monkeypatch.syspath_prepend(str(site))
    registry.refresh()
    try:
        assert "plugin_add" in registry.task_names()
        from benchgen.tasks.khop import TASK as KHOP

        assert registry.get_task("khop") is KHOP  # built-ins win
        res = CliRunner().invoke(main, ["generate", "old_style", "--out", str(tmp_path / "old")])
        assert res.exit_code == 2 and "define TASK = Task(...)" in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "old").exists()
        res = CliRunner().invoke(main, ["tasks", "--json"])
        assert res.exit_code == 0
        listed = {t["name"]: t for t in json.loads(res.output)}
        assert "plugin_add" in listed and "khop" in listed  # a broken plugin hides nothing else
        assert "cannot import 'bg_broken'" in listed["broken"]["error"]
        res = CliRunner().invoke(main, ["generate", "broken", "--out", str(tmp_path / "b")])
        assert res.exit_code == 2 and res.output.count("\n") == 1 and "cannot import" in res.output
        res = CliRunner().invoke(main, ["generate", "plugin_add", "--preset", "addition-small",
                                        "--out", str(tmp_path / "add"), "--no-progress"])
        assert res.exit_code == 0, res.output
        ds = load(on_disk)
        res = CliRunner().invoke(main, ["evaluate", str(on_disk), "--model", "echo:<e_1>", "--no-plots",
                                        "--splits", "test_depth", "--out", str(tmp_path / "ev")])
        assert res.exit_code == 0, res.output
        results = json.loads((tmp_path / "ev" / "results.json").read_text())
        want = sum(a == "<e_1>" for a in ds.table("test_depth")["answer"].to_pylist())
        assert sum(c["correct"] for c in results["cells"]) == want
        assert results["model"]["name"] == "<e_1>"  # default name: the spec's last path part
    finally:
        monkeypatch.undo()
        registry.refresh()
    assert "plugin_add" not in registry.task_names()


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_local_tasks_folder_does_not_shadow_benchgen(tmp_path):
    for pkg in ("tasks", "evaluators", "reference_models"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("raise ImportError('the user folder was imported')\n")
        (tmp_path / pkg / "khop.py").write_text("raise ImportError('the user folder was imported')\n")
    (tmp_path / "cli.py").write_text("raise ImportError('the user cli.py was imported')\n")
    res = _run(["-m", "benchgen", "tasks"], tmp_path)
    assert res.returncode == 0 and "khop:" in res.stdout, res.stderr
    res = _run(["-c", "import benchgen.tasks.khop as k, benchgen.evaluators as e; print(k.__file__, e.__file__)"],
               tmp_path)
    assert res.returncode == 0, res.stderr
    assert str(tmp_path) not in res.stdout
    res = _run(["-m", "benchgen", "generate", "khop", "--preset", "khop-small", "--out", "data"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "next:" in res.stderr and "benchgen audit data" in res.stderr
    assert "%|" not in res.stderr  # stderr is not a terminal: no progress bar by default


def test_missing_extras_name_the_install_command(on_disk, tmp_path):
    block = "import sys; sys.modules['torch'] = None; from benchgen.cli import main; main()"
    for args in (["train", "--data", str(on_disk), "--preset", "cpu-khop-looped", "--out", "run"],
                 ["evaluate", str(on_disk), "--model", f"torchscript:{on_disk / 'manifest.json'}", "--out", "e"],
                 ["evaluate", str(on_disk), "--model", "reference:nowhere", "--out", "e2"]):
        res = _run(["-c", block, *args], tmp_path)
        assert res.returncode == 2, res.stderr
        root = Path(__file__).resolve().parents[1]  # installed from this checkout: the hint says so
        assert f"pip install -e '{root}[models]'" in res.stderr and "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_cli_json_outputs(on_disk):
    runner = CliRunner()
    info = json.loads(runner.invoke(main, ["info", str(on_disk), "--json"]).output)
    ds = load(on_disk)
    assert info["fingerprint"] == ds.fingerprint and set(info["splits"]) == SPLITS
    assert info["splits"]["train"]["rows"] == ds.manifest["splits"]["train"]["rows"]
    res = runner.invoke(main, ["audit", str(on_disk), "--json"])
    assert res.exit_code == 0, res.output
    audit = json.loads(res.output)
    assert audit["passed"] is True and audit["violations"] == []
    assert {"files", "format", "ids", "task"} <= {c["check"] for c in audit["checks"]}
    total = sum(i["rows"] for i in ds.manifest["splits"].values())
    assert next(c for c in audit["checks"] if c["check"] == "ids")["checked"] == total
    res = runner.invoke(main, ["audit", str(on_disk), "--verbose"])
    assert res.exit_code == 0 and len([x for x in res.output.splitlines() if " ok " in x]) == len(audit["checks"])
    tasks = json.loads(runner.invoke(main, ["tasks", "--json"]).output)
    assert {"khop", "addition", "induction"} <= {t["name"] for t in tasks}
    assert all(t["presets"] for t in tasks)


def test_shell_completion_completes_commands_and_tasks():
    env = {"_BENCHGEN_COMPLETE": "bash_complete", "COMP_WORDS": "benchgen gen", "COMP_CWORD": "1"}
    res = CliRunner().invoke(main, [], prog_name="benchgen", env=env)
    assert "plain,generate" in res.output.split()
    env.update(COMP_WORDS="benchgen generate kh", COMP_CWORD="2")
    assert CliRunner().invoke(main, [], prog_name="benchgen", env=env).output.split() == ["plain,khop"]


def test_dataset_card_is_hub_ready(on_disk, tmp_path):
    import yaml

    text = (on_disk / "README.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    assert front["license"] == "apache-2.0" and front["size_categories"] == ["n<1K"]
    assert front["task_categories"] == ["text-generation", "question-answering"]
    assert front["pretty_name"].startswith("benchgen khop")
    default, kg = front["configs"]
    assert default["default"] is True
    assert {f["split"]: f["path"] for f in default["data_files"]}["validation"] == "data/valid-*.parquet"
    assert kg == {"config_name": "kg", "data_files": [{"split": "train", "path": "kg.parquet"}]}
    assert "@inproceedings{wang2024grokked," in text and "2604.07822" in text
    assert "| test_systematic |" in text and "## Validity" in text
    hub = pytest.importorskip("huggingface_hub")
    card = hub.DatasetCard.load(on_disk / "README.md")
    assert card.data.license == "apache-2.0" and card.data.pretty_name == front["pretty_name"]
    datasets = pytest.importorskip("datasets")
    graph = datasets.load_dataset(str(on_disk), "kg", cache_dir=str(tmp_path / "cache"))["train"]
    assert graph.num_rows == load(on_disk).extra("kg.parquet").num_rows
    assert set(graph.column_names) == {"head", "relation", "tail", "is_ood"}
