"""Python API: generate in memory, load, evaluate, and a per-item reward for RL trainers.

The CLI is a thin layer over the same calls; nothing here needs torch::

    import benchgen
    splits = benchgen.generate("khop", preset="khop-small", seed=1)   # DatasetDict or {split: Table}
    ds = benchgen.generate("khop", preset="khop-small", output="benchgen")  # manifest, vocab, kg
    ds.save("data/khop-small")                                         # same files as the CLI
    results = benchgen.evaluate("data/khop-small", predictions)        # path, Table, DataFrame, Dataset
    reward = benchgen.score_answer(" 1304", {"answer": "1304"})        # 1.0, evaluator's normalisation

``score_answer`` / ``reward_function`` / ``verl_compute_score`` apply exactly the evaluator's
answer normalisation (strip surrounding whitespace; optional casefold), so a reward during
training and the accuracy in ``results.json`` never disagree about an answer.
"""

from __future__ import annotations

import hashlib
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchgen.card import HF_SPLIT_NAMES
from benchgen.dataset import (
    DEFAULT_ROWS_PER_SHARD,
    WRITER_OVERRIDE,
    Dataset,
    DatasetWriter,
    SplitInfo,
)
from benchgen.dataset import load as _load_dir
from benchgen.errors import BenchgenError, DatasetError
from benchgen.schema import SPLIT_NAME
from benchgen.vocab import Vocab

Output = Literal["auto", "datasets", "arrow", "benchgen"]


# --- in-memory generation ----------------------------------------------------------------------
class _MemoryWriter(DatasetWriter):
    """A DatasetWriter that keeps tables in memory; shard hashes match the on-disk writer's."""

    sink: dict  # set on the per-call subclass

    def __init__(self, out: str | Path, *, task: str, config: dict, seed: int, vocab: Vocab,
                 schema: pa.Schema, overwrite: bool = False, description: str = "",
                 rows_per_shard: int = DEFAULT_ROWS_PER_SHARD):
        self.out = Path(out)
        self.task, self.config, self.seed, self.vocab = task, config, seed, vocab
        self.schema, self.description, self.rows_per_shard = schema, description, rows_per_shard
        self.dictionary_columns = [n for n in ("split", "depth", "width") if n in schema.names]
        self.splits: dict[str, SplitInfo] = {}
        self.extras: dict[str, str] = {}
        self.tables: dict[str, pa.Table] = {}
        self.extra_tables: dict[str, pa.Table] = {}

    def _encode(self, table: pa.Table, **options) -> str:
        """sha256 of the parquet bytes the on-disk writer would produce (so fingerprints agree)."""
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf, compression="zstd", **options)
        return hashlib.sha256(buf.getvalue().to_pybytes()).hexdigest()

    def write_split(self, split: str, tables: Iterable[pa.Table]) -> None:
        """Collect one split; hash it shard by shard exactly as the file writer shards it."""
        if not SPLIT_NAME.match(split):
            raise BenchgenError(f"split name {split!r}: must match ^\\w+$")
        if split in self.tables:
            raise BenchgenError(f"split {split!r} written twice")
        parts = [t for t in tables if t.num_rows]
        for t in parts:
            if not t.schema.equals(self.schema):
                raise BenchgenError(f"split {split!r}: table schema {t.schema} != dataset schema {self.schema}")
        if not parts:
            raise BenchgenError(f"split {split!r} has no rows")
        table = pa.concat_tables(parts)
        n_shards = -(-table.num_rows // self.rows_per_shard)
        names, digest = [], hashlib.sha256()
        for i in range(n_shards):
            shard = table.slice(i * self.rows_per_shard, self.rows_per_shard)
            digest.update(self._encode(shard, row_group_size=65536, use_dictionary=self.dictionary_columns,
                                       write_statistics=False).encode())
            names.append(f"data/{split}-{i:05d}-of-{n_shards:05d}.parquet")
        d, c = np.unique(table.column("depth").to_numpy(), return_counts=True)
        self.splits[split] = SplitInfo(rows=table.num_rows, shards=names, sha256=digest.hexdigest(),
                                       depths={str(k): int(v) for k, v in zip(d.tolist(), c.tolist())})
        self.tables[split] = table

    def write_extra(self, name: str, table: pa.Table) -> None:
        """Keep a task extra (e.g. ``kg.parquet``) in memory."""
        self.extras[name] = self._encode(table)
        self.extra_tables[name] = table

    def close(self) -> Path:
        """Hand the collected dataset to the caller's sink (no files are written)."""
        manifest = self.manifest()
        from benchgen.validity import measure  # as the file writer: cheap baselines, recorded in the manifest

        validity = measure(MemoryDataset(manifest, self.vocab, self.tables, self.extra_tables))
        if validity is not None:
            manifest["validity"] = validity
        self.sink.update(manifest=manifest, vocab=self.vocab, tables=self.tables,
                         extras=self.extra_tables, description=self.description)
        return self.out

    def abort(self) -> None:
        self.tables.clear()


class MemoryDataset(Dataset):
    """A generated dataset held in memory: the same reading API as an on-disk ``Dataset``."""

    in_memory = True

    def __init__(self, manifest: dict, vocab: Vocab, tables: dict[str, pa.Table],
                 extras: dict[str, pa.Table] | None = None, description: str = ""):
        self.manifest, self.vocab, self.tables = manifest, vocab, tables
        self.extras, self.description = dict(extras or {}), description
        self.path = Path(f"<memory:{manifest['task']}:{manifest['fingerprint'][:16]}>")

    def shards(self, split: str) -> list[Path]:
        raise DatasetError(f"{self.path}: an in-memory dataset has no shard files (save() it first)")

    def table(self, split: str, columns: list[str] | None = None) -> pa.Table:
        """One split (optionally only some columns) as an arrow table."""
        if split not in self.tables:
            raise DatasetError(f"split '{split}': not in {self.path} (has: {', '.join(self.splits)})")
        t = self.tables[split]
        return t.select(columns) if columns is not None else t

    def iter_batches(self, split: str, batch_size: int = 65536, columns: list[str] | None = None) -> Iterator:
        yield from self.table(split, columns).to_batches(max_chunksize=batch_size)

    def extra(self, name: str) -> pa.Table:
        if name not in self.extras:
            raise DatasetError(f"{self.path}: task file {name} is missing")
        return self.extras[name]

    def verify_hashes(self) -> list[str]:
        return []  # the tables are the ones that were hashed; nothing on disk can drift

    def save(self, out: str | Path, overwrite: bool = False) -> Path:
        """Write the dataset as the CLI would (atomic; refuses an existing target unless asked)."""
        m = self.manifest
        writer = DatasetWriter(out, task=m["task"], config=m["config"], seed=m["seed"], vocab=self.vocab,
                               schema=next(iter(self.tables.values())).schema, overwrite=overwrite,
                               description=self.description)
        with writer:
            for name, table in self.extras.items():
                writer.write_extra(name, table)
            for split, table in self.tables.items():
                writer.write_split(split, [table])
        return Path(out)

    def to_arrow(self) -> dict[str, pa.Table]:
        """{split: arrow table}, benchgen split names."""
        return dict(self.tables)

    def to_datasets(self):
        """A ``datasets.DatasetDict`` with Hugging Face split names (``valid`` -> ``validation``)."""
        return _to_datasets(self.tables)


def _to_datasets(tables: dict[str, pa.Table]):
    try:
        import datasets
    except ModuleNotFoundError:
        raise BenchgenError("output='datasets' needs the datasets package: pip install 'benchgen[datasets]'") from None
    return datasets.DatasetDict({HF_SPLIT_NAMES.get(s, s): datasets.Dataset(t) for s, t in tables.items()})


def _datasets_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("datasets") is not None


def _shape(ds: Dataset, output: Output):
    """Return ``ds`` in the requested form (see ``generate``)."""
    if output == "benchgen":
        return ds
    if output not in ("auto", "datasets", "arrow"):
        raise BenchgenError(f"output={output!r}: expected one of auto, datasets, arrow, benchgen")
    tables = ds.tables if isinstance(ds, MemoryDataset) else {s: ds.table(s) for s in ds.splits}
    if output == "datasets" or (output == "auto" and _datasets_installed()):
        return _to_datasets(tables)
    return dict(tables)


def generate(task: str, preset: str | None = None, *, output: Output = "auto", progress: bool = False,
             config: dict | str | Path | None = None, **overrides: Any):
    """Generate a dataset in memory (no files written) and return its splits.

    ``overrides`` are the task's config fields (``benchgen generate TASK --help``), e.g.
    ``train_hops="2-4"``, ``seed=1``; ``config`` is a dict or JSON/YAML file of the same keys
    (overrides win). ``output``: ``"auto"`` gives a ``datasets.DatasetDict`` when ``datasets``
    is installed and else ``{split: pyarrow.Table}``; ``"datasets"`` / ``"arrow"`` force one;
    ``"benchgen"`` gives a :class:`MemoryDataset` (manifest, vocab, task extras such as the
    khop graph; ``evaluate``, ``audit`` and ``save`` accept it). The same options and seed give
    the same rows and the same fingerprint as ``benchgen generate`` writing to disk.
    """
    from benchgen import registry
    from benchgen.config import build_config

    mod = registry.get_task(task)
    options = {**(read_config(config) if isinstance(config, (str, Path)) else dict(config or {})), **overrides}
    file_preset = options.pop("preset", None)
    preset = preset if preset is not None else file_preset
    for cli_only in ("out", "overwrite"):  # a CLI config file may name them; in memory they mean nothing
        options.pop(cli_only, None)
    cfg = build_config(mod.CONFIG, mod.PRESETS, preset, options)
    sink: dict = {}
    writer = type("_SinkWriter", (_MemoryWriter,), {"sink": sink})
    never_created = Path(tempfile.gettempdir()) / f"benchgen-memory-{uuid.uuid4().hex}"
    token = WRITER_OVERRIDE.set(writer)
    try:
        mod.generate(cfg, never_created, overwrite=False, progress=progress)
    finally:
        WRITER_OVERRIDE.reset(token)
    if not sink:
        raise BenchgenError(f"task {task!r}: its generate() did not write through benchgen.dataset.DatasetWriter")
    return _shape(MemoryDataset(**sink), output)


def load(path: str | Path, *, output: Output = "benchgen"):
    """Open a dataset directory: a benchgen ``Dataset`` (default), or its splits as in ``generate``."""
    return _shape(_load_dir(path), output)


def read_config(path: str | Path) -> dict:
    """Options from a JSON or YAML file (keys as the CLI's option names, `-` or `_`)."""
    import json

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise BenchgenError(f"--config {path}: cannot read ({e.strerror})") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # yaml.YAMLError / json.JSONDecodeError: both one-line messages
        raise BenchgenError(f"--config {path}: not valid {path.suffix.lstrip('.') or 'JSON'} "
                            f"({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise BenchgenError(f"--config {path}: expected a mapping of option names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


# --- evaluation ---------------------------------------------------------------------------------
PREDICTION_COLUMNS = ("id", "prediction", "loops", "margin", "entropy", "kl_prev")


def _predictions_table(predictions) -> Any:
    """A ``datasets.Dataset`` becomes an arrow table of the prediction columns; others pass through."""
    if type(predictions).__module__.startswith("datasets.") and hasattr(predictions, "with_format"):
        table = predictions.with_format("arrow")[:]
        return table.select([c for c in PREDICTION_COLUMNS if c in table.column_names])
    return predictions


def evaluate(dataset, predictions, **options: Any):
    """Score predictions (path, arrow table, DataFrame, dict or ``datasets.Dataset``) on a dataset.

    ``dataset`` is a directory, a ``Dataset`` or a :class:`MemoryDataset`; ``options`` are those
    of :func:`benchgen.evaluators.evaluate` (splits, allow_missing, normalization, settings,
    model_name, model_metadata). A ``datasets.Dataset`` may carry extra columns (e.g. the
    examples themselves): only id, prediction, loops, margin, entropy and kl_prev are read.
    """
    from benchgen.evaluators import evaluate as _evaluate

    return _evaluate(dataset, _predictions_table(predictions), **options)


def audit(dataset) -> list[str]:
    """Re-derive every split guarantee (directory, Dataset or MemoryDataset); [] when clean."""
    from benchgen.audit import audit as _audit

    if isinstance(dataset, MemoryDataset):  # the audit reads the files themselves: write them first
        with tempfile.TemporaryDirectory(prefix="benchgen-audit-") as tmp:
            return _audit(_load_dir(dataset.save(Path(tmp) / "dataset")))
    return _audit(dataset if isinstance(dataset, Dataset) else _load_dir(dataset))


# --- per-item reward ----------------------------------------------------------------------------
def _normalization(normalization):
    from benchgen.evaluators.scoring import Normalization

    return normalization or Normalization()


def score_answer(answer: str | Sequence[int] | None, entry: dict | str, *, normalization=None) -> float:
    """1.0 if ``answer`` matches the entry's answer under the evaluator's normalisation, else 0.0.

    ``entry`` is a dataset row (a dict with ``answer``; with ``target_ids`` when ``answer`` is a
    list of token ids) or the answer text itself. Usable directly as an RL reward (TRL, verl).
    """
    if answer is None:
        return 0.0
    if not isinstance(answer, str):
        if not isinstance(entry, dict) or "target_ids" not in entry:
            raise BenchgenError("score_answer: token-id answers need an entry with 'target_ids'")
        return float([int(t) for t in answer] == [int(t) for t in entry["target_ids"]])
    target = entry if isinstance(entry, str) else entry.get("answer") if isinstance(entry, dict) else None
    if target is None:
        raise BenchgenError("score_answer: entry must be a dataset row with an 'answer' or the answer text")
    norm = _normalization(normalization)
    if norm.trivial:
        return float(answer == target)
    a, b = norm.apply(pa.array([answer, str(target)], pa.string())).to_pylist()
    return float(a == b)


def _completion_text(completion: Any) -> str:
    """Text of a TRL completion: a string, or a conversation (list of {"role", "content"})."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    raise BenchgenError(f"reward: expected completion text or a message list, got {type(completion).__name__}")


def reward_function(normalization=None) -> Callable[..., list[float]]:
    """A TRL-style reward ``f(completions, answer, **columns) -> list[float]`` using ``score_answer``.

    TRL passes the dataset's columns as keyword arguments, so a benchgen split with its
    ``answer`` column works as is: ``GRPOTrainer(..., reward_funcs=benchgen.reward_function())``.
    """
    norm = _normalization(normalization)

    def benchgen_exact_match(completions: list, answer: list[str], **_columns: Any) -> list[float]:
        """1.0 per completion that matches its row's answer (evaluator normalisation), else 0.0."""
        if len(completions) != len(answer):
            raise BenchgenError(f"reward: {len(completions)} completions but {len(answer)} answers")
        got = pa.array([_completion_text(c) for c in completions], pa.string())
        want = pa.array([str(a) for a in answer], pa.string())
        if not norm.trivial:  # one normalisation pass over the whole batch, as the evaluator does
            got, want = norm.apply(got), norm.apply(want)
        return pc.equal(got, want).cast(pa.float64()).to_pylist()

    return benchgen_exact_match


def verl_compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None,
                       **_kwargs: Any) -> float:
    """verl's ``custom_reward_function`` signature: ``score_answer(solution_str, ground_truth)``."""
    return score_answer(solution_str, ground_truth)


__all__ = ["generate", "load", "evaluate", "audit", "score_answer", "reward_function", "verl_compute_score",
           "read_config", "MemoryDataset", "HF_SPLIT_NAMES"]
