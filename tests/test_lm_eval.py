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
from benchgen.evaluators.lm_eval import export_lm_eval, import_samples
from benchgen.tasks import khop
from click.testing import CliRunner

from benchgen.cli import main
from benchgen.config import build_config
from benchgen.dataset import load
from benchgen.errors import BenchgenError

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


def test_export_layout(ds_path, tmp_path):
    ds = load(ds_path)
    res = CliRunner().invoke(main, ["export", "lm-eval", str(ds_path), "--out", str(tmp_path / "tasks")])
    assert res.exit_code == 0, res.output
    tasks = tmp_path / "tasks"
    pairs = sorted({(r["split"], r["depth"]) for r in _eval_rows(ds)})
    for split, depth in pairs:
        y = _yaml(tasks / f"benchgen_tiny_khop_{split}_d{depth}.yaml")
        assert y["task"] == f"benchgen_tiny_khop_{split}_d{depth}"
        assert y["dataset_path"] == "parquet" and y["output_type"] == "generate_until"
        files = y["dataset_kwargs"]["data_files"]["test"]
        assert files == [str(p.resolve()) for p in ds.shards(split)]
        assert all(Path(f).is_absolute() and Path(f).is_file() for f in files)
        assert y["process_docs"] == ("!function", f"benchgen_docs.depth_{depth}")
        assert y["metric_list"][0]["metric"] == "exact_match"
        assert y["doc_to_text"] == "{{prompt}}" and y["doc_to_target"] == "{{answer}}"
        assert y["metadata"]["benchgen_fingerprint"] == ds.fingerprint
    top = _yaml(tasks / "benchgen_tiny_khop.yaml")
    splits = sorted({s for s, _ in pairs}, key=ds.splits.index)
    assert top["task"] == [f"benchgen_tiny_khop_{s}" for s in splits]
    for s in splits:
        g = _yaml(tasks / f"benchgen_tiny_khop_{s}.yaml")
        assert g["task"] == [f"benchgen_tiny_khop_{s}_d{d}" for ss, d in pairs if ss == s]
    assert len(list(tasks.glob("*.yaml"))) == len(pairs) + len(splits) + 1
    # the depth filter keeps exactly one depth (checked with datasets, as lm-eval calls it)
    import datasets

    sys.path.insert(0, str(tasks))
    try:
        import benchgen_docs
    finally:
        sys.path.remove(str(tasks))
    table = datasets.Dataset.from_list(ds.table("test_depth").to_pylist())
    for d in (3, 4):
        kept = getattr(benchgen_docs, f"depth_{d}")(table)
        assert kept.num_rows == sum(r["depth"] == d for r in table) and set(kept["depth"]) == {d}
    # refuses to overwrite without --overwrite; --name and --splits
    res = CliRunner().invoke(main, ["export", "lm-eval", str(ds_path), "--out", str(tasks)])
    assert res.exit_code == 2 and "already exists" in res.output
    info = export_lm_eval(ds, tasks, name="my set", splits=["test_depth"], overwrite=True)
    assert info["group"] == "benchgen_my_set" and info["tasks"] == 2
    assert sorted(p.name for p in tasks.glob("*.yaml")) == [
        "benchgen_my_set.yaml", "benchgen_my_set_test_depth.yaml",
        "benchgen_my_set_test_depth_d3.yaml", "benchgen_my_set_test_depth_d4.yaml"]


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
           "--output_path", str(root / "out")]
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
