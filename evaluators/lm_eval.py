"""lm-evaluation-harness bridge: export task YAMLs for a dataset; import lm-eval's logged samples.

Export writes, into TASKDIR, one ``generate_until`` task per (split, depth) reading the split's
parquet shards by absolute path (``dataset_path: parquet``), a group per split and one group
``benchgen_<name>`` over all of them, so::

    lm_eval --model hf --model_args pretrained=PATH --include_path TASKDIR \\
        --tasks benchgen_<name> --log_samples --output_path OUT

runs on any model lm-eval supports. Import reads the ``samples_*.jsonl`` files lm-eval writes
with ``--log_samples`` (each line has ``doc`` — our row, with its ``id`` — and
``filtered_resps``) and returns a predictions table, which benchgen scores per depth as usual.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from benchgen.dataset import Dataset
from benchgen.errors import BenchgenError

DOCS_MODULE = "benchgen_docs"
# Leading/trailing whitespace never decides exact match (the same rule benchgen applies).
EXACT_MATCH = {"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
               "ignore_case": False, "ignore_punctuation": False,
               "regexes_to_ignore": [r"^\s+", r"\s+$"]}


def task_prefix(dataset: Dataset, name: str | None = None) -> str:
    """``benchgen_<name>``: ``name`` or the dataset directory name, reduced to ``\\w`` characters."""
    raw = name if name else Path(dataset.path).resolve().name
    clean = re.sub(r"\W+", "_", raw).strip("_").lower()
    if not clean:
        raise BenchgenError(f"--name {raw!r}: needs at least one letter, digit or underscore")
    return f"benchgen_{clean}"


def _q(s: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(s, ensure_ascii=False)


def _task_yaml(task: str, group_tag: str, files: list[str], depth: int, max_gen_toks: int,
               fingerprint: str, split: str) -> str:
    lines = [
        f"task: {task}",
        f"tag: [{group_tag}_all]",
        "dataset_path: parquet",
        "dataset_kwargs:",
        "  data_files:",
        "    test:",
        *[f"      - {_q(f)}" for f in files],
        "test_split: test",
        f"process_docs: !function {DOCS_MODULE}.depth_{depth}",
        "output_type: generate_until",
        'doc_to_text: "{{prompt}}"',
        'doc_to_target: "{{answer}}"',
        'target_delimiter: ""',
        "num_fewshot: 0",
        "generation_kwargs:",
        '  until: ["\\n"]',
        "  do_sample: false",
        "  temperature: 0.0",
        f"  max_gen_toks: {max_gen_toks}",
        "metric_list:",
        f"  - metric: {EXACT_MATCH['metric']}",
        f"    aggregation: {EXACT_MATCH['aggregation']}",
        "    higher_is_better: true",
        "    ignore_case: false",
        "    ignore_punctuation: false",
        "    regexes_to_ignore:",
        *[f"      - {_q(r)}" for r in EXACT_MATCH["regexes_to_ignore"]],
        "metadata:",
        "  version: 1.0",
        f"  benchgen_split: {split}",
        f"  benchgen_depth: {depth}",
        f"  benchgen_fingerprint: {_q(fingerprint)}",
    ]
    return "\n".join(lines) + "\n"


def _group_yaml(group: str, tasks: list[str], fingerprint: str) -> str:
    lines = [f"group: {group}", "task:", *[f"  - {t}" for t in tasks],
             "aggregate_metric_list:", "  - metric: exact_match", "    aggregation: mean",
             "    weight_by_size: true", "metadata:", "  version: 1.0",
             f"  benchgen_fingerprint: {_q(fingerprint)}"]
    return "\n".join(lines) + "\n"


def _docs_module(depths: list[int]) -> str:
    fns = "\n\n".join(
        f"def depth_{d}(dataset):\n    return _keep(dataset, {d})\n" for d in depths)
    return (
        '"""Written by `benchgen export lm-eval`: keep one depth of a split (process_docs)."""\n\n'
        "import numpy as np\n\n\n"
        "def _keep(dataset, depth):\n"
        "    return dataset.filter(lambda d: np.asarray(d) == depth, input_columns='depth', batched=True)\n\n\n"
        + fns)


def export_lm_eval(dataset: Dataset, out: str | Path, *, name: str | None = None,
                   splits: Sequence[str] | None = None, max_gen_toks: int | None = None,
                   overwrite: bool = False) -> dict:
    """Write lm-eval task YAMLs for ``dataset`` into ``out`` (atomically); return a summary.

    Default splits: every split except train. ``max_gen_toks`` defaults to the longest answer
    in characters plus 8 (a safe upper bound on tokens for any tokenizer).
    """
    from benchgen.atomic import atomic_dir
    from benchgen.dataset import check_target

    out = check_target(out, overwrite)
    splits = list(splits) if splits else [s for s in dataset.splits if s != "train"]
    if not splits:
        raise BenchgenError(f"{dataset.path}: no splits to export")
    prefix = task_prefix(dataset, name)
    fp = dataset.fingerprint
    files: dict[str, str] = {}
    split_groups, all_depths = [], set()
    longest = 0
    for split in splits:
        paths = [str(p.resolve()) for p in dataset.shards(split)]
        depths = sorted(int(d) for d in dataset.manifest["splits"][split]["depths"])
        answers = dataset.table(split, columns=["answer"]).column("answer")
        longest = max(longest, int(pc.max(pc.utf8_length(answers)).as_py() or 0))
        tasks = []
        for d in depths:
            task = f"{prefix}_{split}_d{d}"
            tasks.append(task)
            files[f"{task}.yaml"] = (split, d, paths)
        all_depths.update(depths)
        group = f"{prefix}_{split}"
        files[f"{group}.yaml"] = _group_yaml(group, tasks, fp)
        split_groups.append(group)
    gen = max_gen_toks if max_gen_toks is not None else longest + 8
    if gen < 1:
        raise BenchgenError(f"--max-gen-toks: expected a positive integer, got {gen}")
    for fname, spec in list(files.items()):
        if isinstance(spec, tuple):
            split, d, paths = spec
            files[fname] = _task_yaml(fname[:-5], prefix, paths, d, gen, fp, split)
    files[f"{prefix}.yaml"] = _group_yaml(prefix, split_groups, fp)
    files[f"{DOCS_MODULE}.py"] = _docs_module(sorted(all_depths))
    with atomic_dir(out, overwrite=True) as tmp:  # --overwrite was checked before any work
        for fname, text in files.items():
            (tmp / fname).write_text(text, encoding="utf-8")
    n_tasks = sum(1 for v in files if v.endswith(".yaml")) - len(split_groups) - 1
    return {"path": out, "group": prefix, "split_groups": split_groups, "tasks": n_tasks,
            "max_gen_toks": gen}


# --- import -----------------------------------------------------------------------------------
def sample_files(sources: Sequence[str | Path]) -> list[Path]:
    """Expand files and directories (searched recursively for ``samples_*.jsonl``)."""
    found: list[Path] = []
    for src in sources:
        p = Path(src).expanduser()
        if p.is_dir():
            hits = sorted(p.rglob("samples_*.jsonl"))
            if not hits:
                raise BenchgenError(f"--lm-eval-samples {p}: no samples_*.jsonl files under this directory "
                                    "(run lm_eval with --log_samples --output_path DIR)")
            found += hits
        elif p.is_file():
            found.append(p)
        else:
            raise BenchgenError(f"--lm-eval-samples {p}: does not exist")
    return found


def _read_samples(path: Path) -> pa.Table:
    """One samples file -> (id, answer, prediction) with one row per logged sample."""
    ids, answers, preds = [], [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise BenchgenError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            doc = rec.get("doc") if isinstance(rec, dict) else None
            if not isinstance(doc, dict) or "id" not in doc:
                raise BenchgenError(f"{path}:{lineno}: sample has no doc.id (not from a benchgen export?)")
            resp = rec.get("filtered_resps", rec.get("resps"))
            while isinstance(resp, list):
                if not resp:
                    raise BenchgenError(f"{path}:{lineno}: empty filtered_resps")
                resp = resp[0]
            if not isinstance(resp, str):
                raise BenchgenError(f"{path}:{lineno}: expected a generated string in filtered_resps, "
                                    f"got {type(resp).__name__} (export uses output_type generate_until)")
            ids.append(str(doc["id"]))
            answers.append(doc.get("answer"))
            preds.append(resp)
    return pa.table({"id": pa.array(ids, pa.string()), "answer": pa.array(answers, pa.string()),
                     "prediction": pa.array(preds, pa.string()),
                     "file": pa.array(np.full(len(ids), str(path), dtype=object), pa.string())})


def import_samples(dataset: Dataset, sources: Sequence[str | Path]) -> tuple[pa.Table, list[str]]:
    """lm-eval ``samples_*.jsonl`` -> (predictions table (id, prediction, loops), scored splits).

    Predictions are trimmed of surrounding whitespace. Errors: a sample id seen twice (two runs
    mixed: the message names both files), an id not in the dataset, or a logged answer that
    differs from the dataset's (the samples were produced on another dataset).
    """
    files = sample_files(sources)
    if not files:
        raise BenchgenError("--lm-eval-samples: no files given")
    table = pa.concat_tables([_read_samples(p) for p in files])
    if table.num_rows == 0:
        raise BenchgenError(f"--lm-eval-samples: no samples in {', '.join(map(str, files))}")
    counts = table.group_by("id").aggregate([("id", "count")])
    dup = pc.filter(counts, pc.greater(counts["id_count"], 1))
    if dup.num_rows:
        first = dup["id"][0].as_py()
        where = sorted(set(pc.filter(table["file"], pc.equal(table["id"], first)).to_pylist()))
        raise BenchgenError(f"--lm-eval-samples: example {first!r} appears {dup['id_count'][0].as_py()} times "
                            f"(in {', '.join(where)}); pass the samples of one lm-eval run only")
    known = []
    for split in dataset.splits:
        t = dataset.table(split, columns=["id", "answer"])
        known.append(t.append_column("split", pa.array(np.full(t.num_rows, split, dtype=object), pa.string())))
    ref = pa.concat_tables(known)
    joined = table.join(ref, "id", join_type="left outer", right_suffix="_ref")
    missing = joined.filter(pc.is_null(joined["split"]))
    if missing.num_rows:
        raise BenchgenError(f"--lm-eval-samples {missing['file'][0].as_py()}: example id "
                            f"{missing['id'][0].as_py()!r} is not in dataset {dataset.path}")
    differs = joined.filter(pc.fill_null(pc.not_equal(joined["answer"], joined["answer_ref"]), False))
    if differs.num_rows:
        raise BenchgenError(f"--lm-eval-samples {differs['file'][0].as_py()}: example {differs['id'][0].as_py()!r} "
                            f"has answer {differs['answer'][0].as_py()!r} but the dataset says "
                            f"{differs['answer_ref'][0].as_py()!r} (samples from a different dataset?)")
    splits = [s for s in dataset.splits if s in set(joined["split"].to_pylist())]
    preds = pa.table({"id": table["id"], "prediction": pc.utf8_trim_whitespace(table["prediction"]),
                      "loops": pa.nulls(table.num_rows, pa.int32())})
    return preds, splits
