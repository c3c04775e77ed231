"""lm-eval bridge: exported task YAMLs run in the real lm-evaluation-harness, samples come back.

The lm-eval run uses a model registered locally (answers right for even ids only), through
lm-eval's own CLI with --log_samples; its logged samples are scored by `benchgen evaluate
--lm-eval-samples` and must agree with lm-eval's own exact_match per task and with the accuracy
recomputed from the ids.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from fixtures.tasks import khop
from fixtures.toy import tiny_gpt2

from benchgen.cli import main
from benchgen.config import build_config
from benchgen.dataset import load
from benchgen.errors import BenchgenError
from benchgen.evaluators.lm_eval import export_lm_eval, import_samples

TINY = {"structure": "permutation", "num_entities": 12, "num_relations": 3, "out_degree": 3,
        "ood_fraction": 0.25, "train_hops": "2", "test_hops": "3,4", "train_per_hop": 40,
        "valid_per_hop": 5, "test_per_hop": 6, "systematic_per_hop": 6, "seed": 5}

RUNNER = '''
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model


@register_model("benchgen_even")
class EvenOracle(LM):
    """Right (with a leading space, as LMs emit) for even row numbers, wrong for odd ones."""

    def __init__(self, **kwargs):
        super().__init__()

    def generate_until(self, requests, disable_tqdm=False):
        return [" " + r.doc["answer"] if int(r.doc["id"][-9:]) % 2 == 0 else "nope\\nmore" for r in requests]

    def loglikelihood(self, requests, disable_tqdm=False):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        raise NotImplementedError


from lm_eval.__main__ import cli_evaluate

cli_evaluate()
'''


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!function", lambda loader, node: ("!function", loader.construct_scalar(node)))


def _yaml(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - SafeLoader subclass


@pytest.fixture(scope="module")
def ds_path(tmp_path_factory) -> Path:
    cfg = build_config(khop.KhopConfig, khop.PRESETS, None, dict(TINY))
    return khop.generate(cfg, tmp_path_factory.mktemp("lmeval") / "tiny-khop", progress=False)


def _eval_rows(ds):
    return [r for s in ds.splits if s != "train" for r in ds.table(s).to_pylist()]


def _docs(tasks: Path):
    """Import the exported benchgen_docs.py from a task directory (as lm-eval's !function does)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"benchgen_docs_{abs(hash(str(tasks)))}", tasks / "benchgen_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_export_layout(ds_path, tmp_path):
    ds = load(ds_path)
    res = CliRunner().invoke(main, ["export", "lm-eval", str(ds_path), "--out", str(tmp_path / "tasks")])
    assert res.exit_code == 0, res.output
    tasks = tmp_path / "tasks"
    pairs = sorted({(r["split"], r["depth"]) for r in _eval_rows(ds)})
    for split, depth in pairs:
        text = (tasks / f"benchgen_tiny_khop_{split}_d{depth}.yaml").read_text()
        assert "!!python" not in text  # plain safe YAML, plus lm-eval's !function tag
        y = _yaml(tasks / f"benchgen_tiny_khop_{split}_d{depth}.yaml")
        assert y["task"] == f"benchgen_tiny_khop_{split}_d{depth}"
        assert y["custom_dataset"] == ("!function", "benchgen_docs.load") and y["output_type"] == "generate_until"
        assert y["test_split"] == "test" and y["fewshot_split"] == "train" and "num_fewshot" not in y
        assert y["process_docs"] == ("!function", f"benchgen_docs.depth_{depth}")
        assert y["metric_list"][0]["metric"] == "exact_match"
        assert y["doc_to_text"] == "{{prompt}}" and y["doc_to_target"] == "{{answer}}"
        assert y["generation_kwargs"]["until"] == ["\n"] and y["fewshot_delimiter"] == "\n"
        assert y["metadata"]["benchgen_fingerprint"] == ds.fingerprint and y["metadata"]["benchgen_split"] == split
    top = _yaml(tasks / "benchgen_tiny_khop.yaml")
    splits = sorted({s for s, _ in pairs}, key=ds.splits.index)
    assert top["task"] == [f"benchgen_tiny_khop_{s}" for s in splits]
    for s in splits:
        g = _yaml(tasks / f"benchgen_tiny_khop_{s}.yaml")
        assert g["task"] == [f"benchgen_tiny_khop_{s}_d{d}" for ss, d in pairs if ss == s]
    assert len(list(tasks.glob("*.yaml"))) == len(pairs) + len(splits) + 1
    readme = (tasks / "README.md").read_text()
    assert "lm_eval --model hf --model_args pretrained=" in readme and "--tasks benchgen_tiny_khop" in readme
    assert "--lm-eval-samples lm-out" in readme
    # data paths are relative to the task directory and name exactly the dataset's shards
    docs = _docs(tasks)
    for s in [*splits, "train"]:
        assert not any(Path(f).is_absolute() for f in docs.DATA[s])
        assert [(tasks / f).resolve() for f in docs.DATA[s]] == [p.resolve() for p in ds.shards(s)]
    # moving the task dir together with the dataset keeps the paths valid
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copytree(ds_path, moved / ds_path.name)
    export_lm_eval(load(moved / ds_path.name), moved / "tasks")
    shutil.move(str(moved), str(tmp_path / "elsewhere"))
    docs2 = _docs(tmp_path / "elsewhere" / "tasks")
    loaded = docs2.load(benchgen_split="test_depth", version=1.0)
    assert loaded["test"].num_rows == ds.manifest["splits"]["test_depth"]["rows"]
    assert loaded["train"].num_rows == ds.manifest["splits"]["train"]["rows"]
    # the depth filter keeps exactly one depth (checked with datasets, as lm-eval calls it)
    for d in (3, 4):
        kept = getattr(docs, f"depth_{d}")(loaded["test"])
        assert kept.num_rows == sum(r["depth"] == d for r in loaded["test"]) and set(kept["depth"]) == {d}
    # refuses to overwrite without --overwrite; --name and --splits
    res = CliRunner().invoke(main, ["export", "lm-eval", str(ds_path), "--out", str(tasks)])
    assert res.exit_code == 2 and "already exists" in res.output
    info = export_lm_eval(ds, tasks, name="my set", splits=["test_depth"], overwrite=True)
    assert info["group"] == "benchgen_my_set" and info["tasks"] == 2
    assert sorted(p.name for p in tasks.glob("*.yaml")) == [
        "benchgen_my_set.yaml", "benchgen_my_set_test_depth.yaml",
        "benchgen_my_set_test_depth_d3.yaml", "benchgen_my_set_test_depth_d4.yaml"]


def test_export_hub_dataset_and_fewshot_options(ds_path, tmp_path):
    res = CliRunner().invoke(main, ["export", "lm-eval", str(ds_path), "--out", str(tmp_path / "hub"),
                                    "--hub-dataset", "someone/tiny-khop", "--num-fewshot", "3"])
    assert res.exit_code == 0, res.output
    y = _yaml(tmp_path / "hub" / "benchgen_tiny_khop_valid_d2.yaml")
    assert y["dataset_path"] == "someone/tiny-khop" and "custom_dataset" not in y
    assert y["test_split"] == "validation" and y["fewshot_split"] == "train" and y["num_fewshot"] == 3
    assert "the Hub dataset `someone/tiny-khop`" in (tmp_path / "hub" / "README.md").read_text()
    for bad, msg in ((["--hub-dataset", "no-slash"], "expected a Hub dataset id"),
                     (["--num-fewshot", "-1"], "-1")):
        res = CliRunner().invoke(main, ["export", "lm-eval", str(ds_path), "--out", str(tmp_path / "x"), *bad])
        assert res.exit_code == 2 and msg in res.output, res.output


@pytest.fixture(scope="module")
def lm_run(ds_path, tmp_path_factory) -> tuple[Path, Path]:
    """One real lm-eval CLI run over the exported group, with --log_samples."""
    pytest.importorskip("lm_eval")
    root = tmp_path_factory.mktemp("lmrun")
    export_lm_eval(load(ds_path), root / "tasks")
    (root / "run_lm_eval.py").write_text(RUNNER)
    env = {**os.environ, "HF_DATASETS_CACHE": str(root / "hf-cache"), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, str(root / "run_lm_eval.py"), "run", "--model", "benchgen_even",
           "--include_path", str(root / "tasks"), "--tasks", "benchgen_tiny_khop", "--log_samples",
           "--num_fewshot", "2", "--output_path", str(root / "out")]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "out", root


def test_lm_eval_run_round_trips_through_samples(ds_path, lm_run, tmp_path):
    out, _ = lm_run
    ds = load(ds_path)
    rows = _eval_rows(ds)
    samples = sorted(out.rglob("samples_*.jsonl"))
    pairs = {(r["split"], r["depth"]) for r in rows}
    assert len(samples) == len(pairs)
    res = CliRunner().invoke(main, ["evaluate", str(ds_path), "--lm-eval-samples", str(out), "--no-plots",
                                    "--model-name", "even-lm", "--out", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    results = json.loads((tmp_path / "ev" / "results.json").read_text())
    cells = {(c["split"], c["depth"]): (c["n"], c["correct"]) for c in results["cells"]}
    expected: dict = {}
    for r in rows:
        n, c = expected.get((r["split"], r["depth"]), (0, 0))
        expected[(r["split"], r["depth"])] = (n + 1, c + int(int(r["id"][-9:]) % 2 == 0))
    assert cells == expected
    assert results["model"]["name"] == "even-lm" and results["model"]["source"] == "lm-eval"
    # lm-eval's own exact_match per task agrees with benchgen's per (split, depth) accuracy
    agg = json.loads(next(out.rglob("results_*.json")).read_text())["results"]
    for (split, depth), (n, c) in expected.items():
        assert agg[f"benchgen_tiny_khop_{split}_d{depth}"]["exact_match,none"] == pytest.approx(c / n)
    # --num_fewshot 2 is honoured: each prompt is two train examples (prompt + answer) then the query
    train_depth = {r["prompt"] + r["answer"]: r["depth"] for r in ds.table("train").to_pylist()}
    train = set(train_depth)
    contexts = {}
    for f in samples:
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            ctx = rec["arguments"]["gen_args_0"]["arg_0"]
            shots = ctx.split("\n")
            assert len(shots) == 3 and shots[-1] == rec["doc"]["prompt"], ctx
            assert set(shots[:2]) <= train
            # shots come from the query's depth in train, else the nearest trained depth below it
            assert {train_depth[x] for x in shots[:2]} == {min(rec["doc"]["depth"], 2)}
            contexts[rec["doc"]["id"]] = ctx
    assert len(set(contexts.values())) > len(contexts) // 2  # drawn per query, not one fixed pair
    # the imported predictions are stored for re-scoring, trimmed of surrounding whitespace
    preds = pq.read_table(tmp_path / "ev" / "predictions.parquet").to_pylist()
    assert len(preds) == len(rows) and all(p["loops"] is None for p in preds)
    assert {p["prediction"] for p in preds if int(p["id"][-9:]) % 2 == 0} <= {r["answer"] for r in rows}


def test_import_errors(ds_path, lm_run, tmp_path):
    out, _ = lm_run
    ds = load(ds_path)
    samples = sorted(out.rglob("samples_*.jsonl"))
    # two runs mixed: the same example twice, both files named
    twice = tmp_path / "twice"
    twice.mkdir()
    shutil.copy(samples[0], twice / "samples_a.jsonl")
    shutil.copy(samples[0], twice / "samples_b.jsonl")
    with pytest.raises(BenchgenError, match=r"appears 2 times .*samples_a.jsonl.*samples_b.jsonl"):
        import_samples(ds, [twice])
    # samples from another dataset (answer differs) and unknown ids
    line = json.loads(samples[0].read_text().splitlines()[0])
    line["doc"]["answer"] = "<e_999>"
    other = tmp_path / "samples_other.jsonl"
    other.write_text(json.dumps(line) + "\n")
    with pytest.raises(BenchgenError, match=r"has answer '<e_999>' but the dataset says"):
        import_samples(ds, [other])
    line["doc"]["id"] = "khop/test_id/999999999"
    other.write_text(json.dumps(line) + "\n")
    with pytest.raises(BenchgenError, match=r"example id 'khop/test_id/999999999' is not in dataset"):
        import_samples(ds, [other])
    other.write_text('{"doc": {"x": 1}, "filtered_resps": ["a"]}\n')
    with pytest.raises(BenchgenError, match=r"samples_other.jsonl:1: sample has no doc.id"):
        import_samples(ds, [other])
    other.write_text("{not json\n")
    with pytest.raises(BenchgenError, match=r"samples_other.jsonl:1: not valid JSON"):
        import_samples(ds, [other])
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(main, ["evaluate", str(ds_path), "--lm-eval-samples", str(tmp_path / "empty"),
                                    "--out", str(tmp_path / "ev")])
    assert res.exit_code == 2 and "no samples_*.jsonl files" in res.output
    res = CliRunner().invoke(main, ["evaluate", str(ds_path), "--lm-eval-samples", str(tmp_path / "nope"),
                                    "--out", str(tmp_path / "ev")])
    assert res.exit_code == 2 and "does not exist" in res.output
    # a single split's samples score that split only
    one = [p for p in samples if "_test_depth_" in p.name]
    preds, splits = import_samples(ds, one)
    assert splits == ["test_depth"] and preds.num_rows == ds.manifest["splits"]["test_depth"]["rows"]


def _contexts(out: Path) -> dict[str, str]:
    """id -> the prompt lm-eval sent (few-shot examples included), from its samples files."""
    return {json.loads(line)["doc"]["id"]: json.loads(line)["arguments"]["gen_args_0"]["arg_0"]
            for f in sorted(out.rglob("samples_*.jsonl")) for line in f.read_text().splitlines()}


@pytest.mark.slow  # two more lm-eval runs
def test_fewshot_examples_are_stable_per_seed(lm_run):
    out, root = lm_run
    task = "benchgen_tiny_khop_test_depth_d3"
    first = {k: v for k, v in _contexts(out).items() if k.startswith("khop/test_depth/")}
    env = {**os.environ, "HF_DATASETS_CACHE": str(root / "hf-cache"), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    runs = {}
    for name, seed in (("same", "0,1234,1234,1234"), ("other", "0,1234,1234,7")):
        cmd = [sys.executable, str(root / "run_lm_eval.py"), "run", "--model", "benchgen_even",
               "--include_path", str(root / "tasks"), "--tasks", task, "--log_samples", "--num_fewshot", "2",
               "--seed", seed, "--output_path", str(root / f"out-{name}")]
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = _contexts(root / f"out-{name}")
    depth3 = {k: v for k, v in first.items() if k in runs["same"]}
    assert depth3 and runs["same"] == depth3  # the default few-shot seed gives the same prompts again
    assert runs["other"].keys() == depth3.keys() and runs["other"] != depth3  # another seed, other shots


# --- real `lm_eval --model hf` on a tiny local checkpoint agrees row for row with `--model hf:` -------
def _tiny_hf(ds, path: Path) -> Path:
    """A 1-layer GPT-2 with a word-level tokenizer over the dataset vocab, trained a few steps."""
    return tiny_gpt2(ds, path, n_positions=64, steps=40)


@pytest.mark.slow  # ~40 s on 2 busy cores (lm-eval + transformers start-up): python -m pytest -m slow
def test_real_lm_eval_hf_agrees_row_for_row_with_hf_adapter(ds_path, tmp_path):
    """`lm_eval --model hf` (needs accelerate: benchgen[lmeval]) vs `benchgen evaluate --model hf:`."""
    pytest.importorskip("lm_eval")
    pytest.importorskip("accelerate")
    ds = load(ds_path)
    model_dir = _tiny_hf(ds, tmp_path / "tiny-gpt2")
    splits = ["test_systematic", "test_depth"]  # two split groups keep the run short
    export_lm_eval(ds, tmp_path / "tasks", splits=splits)
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "hf-cache"), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "lm_eval", "run", "--model", "hf", "--model_args",
           f"pretrained={model_dir},dtype=float32", "--device", "cpu", "--batch_size", "16",
           "--include_path", str(tmp_path / "tasks"), "--tasks", "benchgen_tiny_khop", "--log_samples",
           "--output_path", str(tmp_path / "lm-out")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runner = CliRunner()
    res = runner.invoke(main, ["evaluate", str(ds_path), "--lm-eval-samples", str(tmp_path / "lm-out"),
                               "--no-plots", "--out", str(tmp_path / "ev-lm")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["evaluate", str(ds_path), "--model", f"hf:{model_dir}", "--no-plots",
                               "--splits", ",".join(splits), "--out", str(tmp_path / "ev-hf")])
    assert res.exit_code == 0, res.output
    answers = {r["id"]: r["answer"] for s in splits for r in ds.table(s).to_pylist()}

    def correct(run: str) -> dict[str, bool]:
        rows = pq.read_table(tmp_path / run / "predictions.parquet").to_pylist()
        return {r["id"]: r["prediction"].strip() == answers[r["id"]] for r in rows}

    lm, hf = correct("ev-lm"), correct("ev-hf")
    assert set(lm) == set(hf) == set(answers)
    assert lm == hf  # row for row
    assert 0 < sum(lm.values()) < len(lm)  # a model that is neither always right nor always wrong
    lm_results = json.loads((tmp_path / "ev-lm" / "results.json").read_text())
    hf_results = json.loads((tmp_path / "ev-hf" / "results.json").read_text())
    assert lm_results["cells"] == hf_results["cells"]
    # the model name comes from lm-eval's results file: the checkpoint's last path part, no absolute path
    assert lm_results["model"]["name"] == "tiny-gpt2" == hf_results["model"]["name"]
    assert lm_results["model"]["lm_eval_model"] == "hf"
