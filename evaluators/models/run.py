"""Run a model adapter over dataset splits in batches, validating everything it returns.

The output is an ordinary predictions table (id, prediction, loops, optional margin / entropy /
kl_prev), so a model run is scored by exactly the same code as a predictions file, and it is
written next to the results so a run can be re-scored without the model.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from benchgen.dataset import Dataset
from benchgen.errors import BenchgenError
from benchgen.evaluators.models.loop_stats import STATS_KEY
from benchgen.evaluators.models.protocol import LOOP_STAT_COLUMNS

OPTIONAL_FLOATS = LOOP_STAT_COLUMNS
OPTIONAL_TEXT = ("lens_top1",)
PREDICTIONS_SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("prediction", pa.string()),
    pa.field("loops", pa.int32()),
    *[pa.field(c, pa.float64()) for c in OPTIONAL_FLOATS],
    *[pa.field(c, pa.string()) for c in OPTIONAL_TEXT],
    pa.field("lens_positions", pa.list_(pa.int32())),  # the readout at every input position (wavefront probe)
])
# The only columns a model is handed: nothing answer-bearing (answer, target_ids, bridges, ...).
MODEL_VISIBLE = ("id", "prompt", "input_ids")
# What benchgen's own adapters (not the model) read to compute the target-vs-best margin.
TARGET_COLUMNS = ("target_ids", "answer")
# Context every factory may ask for by naming it as a keyword parameter.
CONTEXT_OPTIONS = ("vocab", "dataset")
FLAG_NAMES = {"device": "--device", "loop_kwarg": "--loop-kwarg", "loop_config": "--loop-config",
              "trust_remote_code": "--trust-remote-code", "max_new_tokens": "--max-new-tokens"}


def _factory(spec: str):
    from benchgen import registry

    return registry.adapter_factory(spec)  # built-ins and `benchgen.adapters` entry points


def build_adapter(spec: str, dataset: Dataset | None = None, **options):
    """Build the adapter for ``spec`` (e.g. ``hf:./ckpt``), passing only options it accepts.

    ``options`` with value None are dropped; a user option the adapter does not take (e.g.
    ``--loop-kwarg`` for ``python:``) is an error naming the flag. The dataset and its vocabulary
    are passed to factories that have a ``dataset`` / ``vocab`` keyword.
    """
    from benchgen import registry

    factory = _factory(spec)
    params = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    given = {k: v for k, v in options.items() if v is not None and v is not False}
    for key in given:
        if key not in params and not takes_any:
            raise BenchgenError(f"--model {spec}: this adapter does not take {FLAG_NAMES.get(key, key)}")
    if dataset is not None:
        context = {"vocab": dataset.vocab, "dataset": dataset}
        given.update({k: v for k, v in context.items() if k in params})
    adapter = registry.get_adapter(spec, **given)
    for attr in ("name", "supports_loops", "predict"):
        if not hasattr(adapter, attr):
            raise BenchgenError(f"--model {spec}: the factory returned an object without {attr!r} "
                                "(see evaluators.protocol.ModelAdapter)")
    return adapter


def _trusted_scorer(adapter) -> bool:
    """A built-in benchgen adapter that takes ``targets=`` (margins); never user code from python:."""
    module = type(adapter).__module__ or ""
    return bool(getattr(adapter, "takes_targets", False)) and module.startswith("benchgen.") and \
        not module.startswith("benchgen.evaluators.models.python_callable")


def validate_output(out, batch: pa.Table, counts: list[int | None], name: str, vocab=None) -> pa.Table:
    """Check one adapter answer against its batch and normalise it to PREDICTIONS_SCHEMA."""
    if not isinstance(out, pa.Table):
        raise BenchgenError(f"model {name}: predict() returned {type(out).__name__}, expected a pyarrow Table")
    for col in ("id", "prediction"):
        if col not in out.column_names:
            raise BenchgenError(f"model {name}: output has no {col!r} column (has: {', '.join(out.column_names)})")
    want = batch.num_rows * len(counts)
    if out.num_rows != want:
        raise BenchgenError(f"model {name}: returned {out.num_rows} rows for {batch.num_rows} examples x "
                            f"{len(counts)} loop count(s) (expected {want})")
    ids = out.column("id")
    if not (pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type)):
        raise BenchgenError(f"model {name}: output 'id' must be strings, got {ids.type}")
    ids = ids.cast(pa.string())
    unknown = pc.invert(pc.is_in(ids, value_set=batch.column("id").combine_chunks()))
    if ids.null_count or pc.any(unknown).as_py():
        bad = pc.filter(ids, pc.fill_null(unknown, True))[:1].to_pylist()
        raise BenchgenError(f"model {name}: output has ids not in the batch (e.g. {bad[0]!r})")
    if counts == [None]:
        if "loops" in out.column_names and out.column("loops").null_count != out.num_rows:
            raise BenchgenError(f"model {name}: returned loop counts although no loops were requested")
        loops = pa.nulls(out.num_rows, pa.int32())
    else:
        if "loops" not in out.column_names:
            raise BenchgenError(f"model {name}: loops {counts} were requested but the output has no 'loops' column")
        try:
            loops = out.column("loops").cast(pa.int32())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise BenchgenError(f"model {name}: output 'loops' must be integers, got {out.column('loops').type}") from None
        if loops.null_count or not pc.all(pc.is_in(loops, value_set=pa.array(counts, pa.int32()))).as_py():
            raise BenchgenError(f"model {name}: output loop counts differ from the requested {counts}")
    keyed = pa.table({"id": ids, "loops": pc.fill_null(loops, -1)})
    if keyed.group_by(["id", "loops"]).aggregate([]).num_rows != out.num_rows:
        raise BenchgenError(f"model {name}: output has duplicate (id, loops) rows")
    preds = out.column("prediction")
    if pa.types.is_list(preds.type) or pa.types.is_large_list(preds.type):
        if vocab is None or not pa.types.is_integer(preds.type.value_type):
            raise BenchgenError(f"model {name}: 'prediction' must be text or integer token ids, got {preds.type}")
        flat = np.asarray(pc.list_flatten(preds).cast(pa.int64()))
        if len(flat) and (flat.min() < 0 or flat.max() >= len(vocab)):
            raise BenchgenError(f"model {name}: predicted token ids outside the vocabulary [0, {len(vocab)})")
        preds = vocab.render(preds.combine_chunks().cast(pa.list_(pa.int32())))
    elif not (pa.types.is_string(preds.type) or pa.types.is_large_string(preds.type)):
        raise BenchgenError(f"model {name}: 'prediction' must be text (or token ids), got {preds.type}")
    cols = {"id": ids, "prediction": preds.cast(pa.string()), "loops": loops}
    for c in OPTIONAL_FLOATS:
        if c in out.column_names:
            try:
                cols[c] = out.column(c).cast(pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise BenchgenError(f"model {name}: output {c!r} must be numbers, got {out.column(c).type}") from None
        else:
            cols[c] = pa.nulls(out.num_rows, pa.float64())
    for c in OPTIONAL_TEXT:
        have = c in out.column_names and pa.types.is_string(out.column(c).type)
        cols[c] = out.column(c) if have else pa.nulls(out.num_rows, pa.string())
    pos = out.column("lens_positions") if "lens_positions" in out.column_names else None
    if pos is not None and not ((pa.types.is_list(pos.type) or pa.types.is_large_list(pos.type))
                                and pa.types.is_integer(pos.type.value_type)):
        raise BenchgenError(f"model {name}: output 'lens_positions' must be lists of token ids, got {pos.type}")
    cols["lens_positions"] = pos.cast(pa.list_(pa.int32())) if pos is not None else pa.nulls(out.num_rows,
                                                                                              pa.list_(pa.int32()))
    meta = {STATS_KEY: out.schema.metadata[STATS_KEY]} if STATS_KEY in (out.schema.metadata or {}) else None
    return pa.table(cols, schema=PREDICTIONS_SCHEMA if meta is None else PREDICTIONS_SCHEMA.with_metadata(meta))


def default_splits(dataset: Dataset) -> list[str]:
    """Every split except train (what a model is evaluated on)."""
    return [s for s in dataset.splits if s != "train"]


def run_model(dataset: Dataset, adapter, *, splits: Sequence[str] | None = None,
              loops: Sequence[int] | None = None, batch_size: int = 32, limit: int | None = None,
              progress: bool = True) -> pa.Table:
    """Predict ``splits`` (default: all but train) in batches; ``limit`` = first N rows per split.

    Returns the validated predictions table (all-null optional columns dropped).
    """
    from benchgen.progress import bar as progress_bar

    if batch_size < 1:
        raise BenchgenError(f"--batch-size: expected a positive integer, got {batch_size}")
    if limit is not None and limit < 1:
        raise BenchgenError(f"--limit: expected a positive integer, got {limit}")
    splits = list(splits) if splits else default_splits(dataset)
    for s in splits:
        dataset.shards(s)  # clear error for unknown splits
    counts: list[int | None] = [None] if loops is None else [int(t) for t in loops]
    if loops is not None and not adapter.supports_loops:
        raise BenchgenError(f"model {adapter.name}: does not support loops, but --loops was given")
    total = sum(min(dataset.manifest["splits"][s]["rows"], limit or 1 << 62) for s in splits)
    parts: list[pa.Table] = []
    with progress_bar(total, str(adapter.name), "ex", progress) as bar:
        for split in splits:
            left = limit if limit is not None else 1 << 62
            for rb in dataset.iter_batches(split, batch_size=batch_size, columns=list(MODEL_VISIBLE + TARGET_COLUMNS)):
                if left <= 0:
                    break
                batch = pa.Table.from_batches([rb]).slice(0, left)
                left -= batch.num_rows
                visible = batch.select(list(MODEL_VISIBLE))
                if _trusted_scorer(adapter):  # benchgen's own harness code computes margins
                    out = adapter.predict(visible, None if loops is None else list(counts),
                                          targets=batch.select(list(TARGET_COLUMNS)))
                else:
                    out = adapter.predict(visible, None if loops is None else list(counts))
                parts.append(validate_output(out, visible, counts, adapter.name, dataset.vocab))
                bar.update(batch.num_rows)
    meta = next((p.schema.metadata for p in parts if p.schema.metadata), None)
    parts = [p.replace_schema_metadata(None) for p in parts]
    table = pa.concat_tables(parts) if parts else PREDICTIONS_SCHEMA.empty_table()
    drop = [c for c in OPTIONAL_FLOATS + OPTIONAL_TEXT if table.column(c).null_count == table.num_rows]
    return table.drop_columns(drop).replace_schema_metadata(meta)


def predict_for_evaluation(dataset_dir, *, model: str | None = None, lm_eval_samples=None,
                           splits: Sequence[str] | None = None, loops: Sequence[int] | None = None,
                           batch_size: int = 32, limit: int | None = None, progress: bool = True,
                           **adapter_options) -> tuple[Dataset, pa.Table, list[str], dict]:
    """Predictions for ``benchgen evaluate --model SPEC`` or ``--lm-eval-samples PATHS``.

    Returns (dataset, predictions, splits to score, model metadata for results.json).
    """
    from benchgen.dataset import load

    if (model is None) == (not lm_eval_samples):
        raise BenchgenError("evaluate: give exactly one of --predictions, --model or --lm-eval-samples")
    ds = load(dataset_dir)
    if lm_eval_samples:
        from benchgen.evaluators.lm_eval import import_samples

        preds, scored = import_samples(ds, list(lm_eval_samples))
        if splits:
            scored = list(splits)
        from benchgen.evaluators.lm_eval import run_metadata

        files = [str(p) for p in lm_eval_samples]
        return ds, preds, scored, {"source": "lm-eval", "lm_eval_samples": files, **run_metadata(lm_eval_samples)}
    adapter = build_adapter(model, ds, **adapter_options)
    run_splits = list(splits) if splits else default_splits(ds)
    preds = run_model(ds, adapter, splits=run_splits, loops=loops, batch_size=batch_size, limit=limit,
                      progress=progress)
    meta = {"spec": model, "adapter": str(adapter.name), "loops": None if loops is None else list(loops),
            "limit": limit, "batch_size": batch_size,
            **{k: v for k, v in adapter_options.items() if v is not None and v is not False},
            **dict(getattr(adapter, "metadata", None) or {})}  # e.g. reference runs: trained_loops
    definition = (preds.schema.metadata or {}).get(STATS_KEY)
    if definition:  # which per-loop statistics the margin / entropy / KL columns hold
        import json

        meta["loop_stats"] = json.loads(definition)
    return ds, preds, run_splits, meta
