"""lm-evaluation-harness bridge: export task YAMLs for a dataset; import lm-eval's logged samples.

Export writes, into TASKDIR, one ``generate_until`` task per (split, depth), a group per split,
one group ``benchgen_<name>`` over all of them, ``benchgen_docs.py`` (loads the shards by paths
relative to TASKDIR and keeps one depth) and a README.md with the exact commands::

    pip install -e 'CHECKOUT[lmeval]'   (benchgen.install.pip_install: as benchgen was installed)
    lm_eval --model hf --model_args pretrained=PATH --include_path TASKDIR \\
        --tasks benchgen_<name> --log_samples --output_path OUT
    benchgen evaluate DATASET --lm-eval-samples OUT --out eval/NAME

With ``hub_dataset="user/name"`` the tasks read the dataset from the Hub instead (the card maps
``valid`` to ``validation``). Few-shot: ``--num_fewshot N`` (or ``num_fewshot=`` at export)
draws N examples from ``train`` with lm-eval's sampler, the same for the same
``--fewshot_random_seed`` (lm-eval's ``--seed``). The YAML is emitted by PyYAML's safe dumper
(plus one representer for lm-eval's ``!function`` tag), never by string concatenation.

Import reads the ``samples_*.jsonl`` files lm-eval writes with ``--log_samples`` (each line has
``doc`` — our row, with its ``id`` — and ``filtered_resps``) and returns a predictions table,
which benchgen scores per depth as usual; ``run_metadata`` takes the model name and arguments
from the ``results_*.json`` beside them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path, PurePath

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from benchgen.dataset import Dataset
from benchgen.errors import BenchgenError
from benchgen.install import CPU_TORCH_INDEX, pip_install

DOCS_MODULE = "benchgen_docs"
# Leading/trailing whitespace never decides exact match (the same rule benchgen applies).
EXACT_MATCH = {"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
               "ignore_case": False, "ignore_punctuation": False,
               "regexes_to_ignore": [r"^\s+", r"\s+$"]}
HF_SPLIT_NAMES = {"valid": "validation"}  # as in benchgen.pipeline.card: the Hub's split names


def task_prefix(dataset: Dataset, name: str | None = None) -> str:
    """``benchgen_<name>``: ``name`` or the dataset directory name, reduced to ``\\w`` characters."""
    raw = name if name else Path(dataset.path).resolve().name
    clean = re.sub(r"\W+", "_", raw).strip("_").lower()
    if not clean:
        raise BenchgenError(f"--name {raw!r}: needs at least one letter, digit or underscore")
    return f"benchgen_{clean}"


class Function(str):
    """A ``!function module.attr`` YAML value (lm-eval imports it from the task directory)."""


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper plus the ``!function`` tag lm-eval task files use."""


_Dumper.add_representer(Function, lambda dumper, v: dumper.represent_scalar("!function", str(v)))


def dump_yaml(data: dict) -> str:
    """YAML text of plain data (keys in the order given)."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000)


def _task_config(task: str, prefix: str, split: str, depth: int, *, max_gen_toks: int, num_fewshot: int,
                 fingerprint: str, hub_dataset: str | None) -> dict:
    """One lm-eval task: a (split, depth) cell, exact match, greedy until a newline."""
    source: dict = ({"dataset_path": hub_dataset, "test_split": HF_SPLIT_NAMES.get(split, split)}
                    if hub_dataset else {"custom_dataset": Function(f"{DOCS_MODULE}.load"), "test_split": "test"})
    return {
        "task": task,
        "tag": [f"{prefix}_all"],
        **source,
        "fewshot_split": "train",
        "process_docs": Function(f"{DOCS_MODULE}.depth_{depth}"),
        # few-shot pool: train rows of this depth, else of the nearest trained depth below it
        "fewshot_config": {"sampler": "default", "process_docs": Function(f"{DOCS_MODULE}.shots_{depth}")},
        "output_type": "generate_until",
        "doc_to_text": "{{prompt}}",
        "doc_to_target": "{{answer}}",
        "target_delimiter": "",
        "fewshot_delimiter": "\n",
        # lm-eval ignores --num_fewshot for a task whose YAML says 0, so 0 is left unsaid
        **({"num_fewshot": num_fewshot} if num_fewshot else {}),
        "generation_kwargs": {"until": ["\n"], "do_sample": False, "temperature": 0.0,
                              "max_gen_toks": max_gen_toks},
        "metric_list": [dict(EXACT_MATCH)],
        "metadata": {"version": 1.0, "benchgen_split": split, "benchgen_depth": depth,
                     "benchgen_fingerprint": fingerprint},
    }


def _group_config(group: str, tasks: list[str], fingerprint: str) -> dict:
    return {"group": group, "task": list(tasks),
            "aggregate_metric_list": [{"metric": "exact_match", "aggregation": "mean", "weight_by_size": True}],
            "metadata": {"version": 1.0, "benchgen_fingerprint": fingerprint}}


def _docs_module(depths: list[int], data: dict[str, list[str]]) -> str:
    """``benchgen_docs.py``: the shard list (relative to this directory), a loader, depth filters."""
    fns = "\n\n".join(f"def depth_{d}(dataset):\n    return _keep(dataset, {d})\n\n\n"
                     f"def shots_{d}(dataset):\n    return _keep(dataset, _nearest(dataset, {d}))\n" for d in depths)
    return (
        '"""Written by `benchgen export lm-eval`: load a split\'s shards (paths relative to this\n'
        'directory) for custom_dataset, and keep one depth of it (process_docs)."""\n\n'
        "from pathlib import Path\n\n"
        "import numpy as np\n\n"
        "HERE = Path(__file__).resolve().parent\n"
        f"DATA = {json.dumps(data, indent=4)}\n\n\n"
        "def load(benchgen_split, **_metadata):\n"
        '    """{"test": the split, "train": few-shot examples}, read from the parquet shards."""\n'
        "    import datasets\n\n"
        "    files = {\"test\": [str(HERE / f) for f in DATA[benchgen_split]],\n"
        "             \"train\": [str(HERE / f) for f in DATA[\"train\"]]}\n"
        "    return datasets.load_dataset(\"parquet\", data_files=files)\n\n\n"
        "def _nearest(dataset, depth):\n"
        '    """depth if the pool has it, else the deepest below it (else the shallowest)."""\n'
        "    have = sorted(set(dataset.unique('depth')))\n"
        "    below = [d for d in have if d <= depth]\n"
        "    return below[-1] if below else have[0]\n\n\n"
        "def _keep(dataset, depth):\n"
        "    return dataset.filter(lambda d: np.asarray(d) == depth, input_columns='depth', batched=True)\n\n\n"
        + fns)


def _readme(dataset: Dataset, prefix: str, out: Path, hub_dataset: str | None, num_fewshot: int) -> str:
    """Task-directory README: the exact commands, from install to per-depth scores."""
    try:
        data_arg = os.path.relpath(Path(dataset.path).resolve(), Path.cwd())
    except ValueError:
        data_arg = str(Path(dataset.path).resolve())
    where = (f"the Hub dataset `{hub_dataset}`" if hub_dataset else
             "the dataset's parquet shards, by paths relative to this directory (keep the two together)")
    return "\n".join([
        f"# lm-evaluation-harness tasks for `{prefix}`", "",
        f"Written by `benchgen export lm-eval`; the tasks read {where}. One task per (split, depth), "
        f"a group per split, and the group `{prefix}` over all of them. Exact match after stripping "
        f"surrounding whitespace, greedy decoding until a newline; {num_fewshot}-shot by default "
        "(few-shot examples come from `train`, the same for the same `--seed` fewshot value).", "",
        "```bash", f"{pip_install('lmeval')}    # as benchgen was installed where this was exported",
        f"lm_eval --model hf --model_args pretrained=PATH/TO/MODEL --include_path {out.name} \\",
        f"    --tasks {prefix} --log_samples --output_path lm-out",
        f"benchgen evaluate {data_arg} --lm-eval-samples lm-out --out eval/MODEL --html", "```", "",
        f"On a machine without a GPU, install CPU-only torch first (`pip install torch --index-url "
        f"{CPU_TORCH_INDEX}`), else pip resolves the multi-GB CUDA build. "
        "Run from the directory that holds this folder (or give `--include_path` its full path). "
        "Add `--num_fewshot N` for N-shot prompts and `--device cuda:0` on a GPU.", ""])


def export_lm_eval(dataset: Dataset, out: str | Path, *, name: str | None = None,
                   splits: Sequence[str] | None = None, max_gen_toks: int | None = None,
                   overwrite: bool = False, num_fewshot: int = 0, hub_dataset: str | None = None) -> dict:
    """Write lm-eval task YAMLs for ``dataset`` into ``out`` (atomically); return a summary.

    Default splits: every split except train. ``max_gen_toks`` defaults to the longest answer
    in characters plus 8 (a safe upper bound on tokens for any tokenizer). Data paths are
    relative to ``out``, or ``hub_dataset`` names a Hub dataset ID to read instead.
    """
    from benchgen.atomic import atomic_dir
    from benchgen.dataset import check_target

    out = check_target(out, overwrite, kind="lm-eval")
    if isinstance(num_fewshot, bool) or not isinstance(num_fewshot, int) or num_fewshot < 0:
        raise BenchgenError(f"--num-fewshot: expected a non-negative integer, got {num_fewshot!r}")
    if hub_dataset is not None and not re.fullmatch(r"[\w.-]+/[\w.-]+", hub_dataset):
        raise BenchgenError(f"--hub-dataset {hub_dataset!r}: expected a Hub dataset id like user/name")
    splits = list(splits) if splits else [s for s in dataset.splits if s != "train"]
    if not splits:
        raise BenchgenError(f"{dataset.path}: no splits to export")
    for s in splits:
        dataset.shards(s)  # unknown split: one clear line
    prefix = task_prefix(dataset, name)
    fp = dataset.fingerprint
    base = out.resolve()

    def rel(p: Path) -> str:
        try:
            return PurePath(os.path.relpath(p.resolve(), base)).as_posix()
        except ValueError:  # another drive (Windows): only an absolute path can reach it
            return p.resolve().as_posix()

    data = {s: [rel(p) for p in dataset.shards(s)] for s in dict.fromkeys([*splits, "train"])}
    tasks: dict[str, tuple[str, int]] = {}
    groups: dict[str, list[str]] = {}
    longest = 0
    for split in splits:
        answers = dataset.table(split, columns=["answer"]).column("answer")
        longest = max(longest, int(pc.max(pc.utf8_length(answers)).as_py() or 0))
        for d in sorted(int(d) for d in dataset.manifest["splits"][split]["depths"]):
            tasks[f"{prefix}_{split}_d{d}"] = (split, d)
            groups.setdefault(f"{prefix}_{split}", []).append(f"{prefix}_{split}_d{d}")
    gen = max_gen_toks if max_gen_toks is not None else longest + 8
    if gen < 1:
        raise BenchgenError(f"--max-gen-toks: expected a positive integer, got {gen}")
    files = {f"{t}.yaml": dump_yaml(_task_config(t, prefix, s, d, max_gen_toks=gen, num_fewshot=num_fewshot,
                                                  fingerprint=fp, hub_dataset=hub_dataset))
             for t, (s, d) in tasks.items()}
    files.update({f"{g}.yaml": dump_yaml(_group_config(g, ts, fp)) for g, ts in groups.items()})
    files[f"{prefix}.yaml"] = dump_yaml(_group_config(prefix, list(groups), fp))
    files[f"{DOCS_MODULE}.py"] = _docs_module(sorted({d for _, d in tasks.values()}), data)
    files["README.md"] = _readme(dataset, prefix, out, hub_dataset, num_fewshot)
    with atomic_dir(out, overwrite, kind="lm-eval") as tmp:  # checked before any work, again at the move
        for fname, text in files.items():
            (tmp / fname).write_text(text, encoding="utf-8")
    return {"path": out, "group": prefix, "split_groups": list(groups), "tasks": len(tasks),
            "max_gen_toks": gen, "num_fewshot": num_fewshot, "hub_dataset": hub_dataset}


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


def _model_args(args) -> dict:
    """lm-eval's ``model_args`` (``"k=v,k2=v2"`` or a dict) as a dict of strings."""
    if isinstance(args, dict):
        return {str(k): str(v) for k, v in args.items()}
    if isinstance(args, str):
        return dict(p.split("=", 1) for p in args.split(",") if "=" in p)
    return {}


def run_metadata(sources: Sequence[str | Path]) -> dict:
    """Model name and arguments from the lm-eval ``results_*.json`` beside the samples files.

    The name is the last path part of ``pretrained=`` (or ``model=``/``path=``), so a local
    checkpoint never puts an absolute path on a leaderboard; {} when no results file is found.
    """
    results = sorted({r for f in sample_files(sources) for r in f.parent.glob("results_*.json")})
    if not results:
        return {}
    try:
        data = json.loads(results[-1].read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BenchgenError(f"--lm-eval-samples {results[-1]}: unreadable results file ({e})") from None
    cfg = data.get("config") if isinstance(data, dict) and isinstance(data.get("config"), dict) else {}
    args = _model_args(cfg.get("model_args"))
    ref = next((args[k] for k in ("pretrained", "model", "path", "engine") if args.get(k)), None)
    ref = ref or (data.get("model_name") if isinstance(data.get("model_name"), str) else None)
    meta = {"lm_eval_model": cfg.get("model"), "lm_eval_model_args": cfg.get("model_args"),
            "lm_eval_results": str(results[-1]),
            "model_name": PurePath(ref.rstrip("/\\")).name if ref else cfg.get("model")}
    return {k: v for k, v in meta.items() if v not in (None, "", {})}


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
