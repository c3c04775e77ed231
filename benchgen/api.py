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

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from benchgen.config import read_config
from benchgen.dataset import Dataset
from benchgen.dataset import load as _load_dir
from benchgen.errors import BenchgenError
from benchgen.memory import MemoryDataset, to_datasets

Output = Literal["auto", "datasets", "arrow", "benchgen"]


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
        return to_datasets(tables)
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
    from benchgen.pipeline.generate import generate as _generate

    spec, cfg = _task_config(task, preset, config, overrides)
    return _shape(_generate(spec, cfg, progress=progress), output)


def _task_config(task: str, preset: str | None, config: dict | str | Path | None, overrides: dict):
    """The registered task and its config: preset <- config file or dict <- keyword overrides."""
    from benchgen import registry
    from benchgen.config import build_config

    spec = registry.get_task(task)
    options = {**(read_config(config) if isinstance(config, (str, Path)) else dict(config or {})), **overrides}
    file_preset = options.pop("preset", None)
    preset = preset if preset is not None else file_preset
    for cli_only in ("out", "overwrite", "workers"):  # a CLI config file may name them; in memory they mean nothing
        options.pop(cli_only, None)
    return spec, build_config(spec.config, spec.presets, preset, options)


# --- procedural datasets (RL environments) -------------------------------------------------------
def procedural(task: str, preset: str | None = None, seed: int = 0, *, split: str = "train",
               depth: int | Sequence[int] | None = None, size: int | None = None, held_out_share: float = 0.1,
               config: dict | str | Path | None = None, **overrides: Any):
    """An index-addressable procedural dataset: ``ds[i]`` -> ``{"question", "answer", "metadata"}``.

    Item ``i`` is the same for the same task options and ``seed`` whatever the order items are read
    in; ``size=None`` is infinite (iterate it, or index any i >= 0). Items come from the task's own
    samplers over the same generator as the files (the khop graph of ``seed`` and the options is the
    one ``benchgen generate`` writes): ``split="train"`` draws the train distribution (training depths,
    never a held-out cell), ``split="test"`` the held-out share ``held_out_share`` of the query space, which
    train never draws (``ds.audit()`` re-checks it). ``depth`` is the difficulty knob: hops for khop
    and induction, operands for addition (an int or a list; default: the training depths). Reward:
    ``benchgen.score_answer(answer, item)``.
    """
    from benchgen.pipeline.procedural import ProceduralDataset

    spec, cfg = _task_config(task, preset, config, {**overrides, "seed": seed})
    return ProceduralDataset(spec, cfg, split=split, depth=depth, size=size, held_out_share=held_out_share)


def _curriculum_base():
    """The pipeline's Curriculum class (imported on first use)."""
    from benchgen.pipeline.curriculum import Curriculum as Base

    return Base


class _CurriculumFactory(type):
    """Makes ``benchgen.Curriculum`` the pipeline's class with a task-name constructor (lazy import)."""

    def __call__(cls, task: str, preset: str | None = None, seed: int = 0, *, target: float = 0.7,
                 band: float = 0.1, window: int = 64, levels: Sequence[int] | None = None,
                 start: int | None = None, split: str = "train", held_out_share: float = 0.1, **overrides: Any):
        """A curriculum over ``benchgen.procedural(task, preset, seed, ...)``'s depth (see its module doc)."""
        spec = {"task": task, "preset": preset, "seed": seed, "split": split, "held_out_share": held_out_share,
                "overrides": overrides}
        base = procedural(task, preset, seed, split=split, held_out_share=held_out_share, **overrides)
        return _curriculum_base()(base, target=target, band=band, window=window, levels=levels, start=start,
                                  spec=spec)

    def from_state(cls, state: dict):
        """Rebuild a curriculum from ``state_dict()`` output and continue where it stopped."""
        s = state["spec"]
        cur = cls(s["task"], s["preset"], s["seed"], target=state["target"], band=state["band"],
                  window=state["window"], levels=state["levels"], split=s["split"], held_out_share=s["held_out_share"],
                  **s["overrides"])
        cur.load_state_dict(state)
        return cur

    def __instancecheck__(cls, obj) -> bool:
        """``isinstance(x, benchgen.Curriculum)`` for the curricula it builds."""
        return isinstance(obj, _curriculum_base())


class Curriculum(metaclass=_CurriculumFactory):
    """``benchgen.Curriculum(task, preset=None, seed=0, target=0.7, band=0.1, window=64, levels=None, ...)``:
    raise or lower the procedural depth to hold a target rolling accuracy; ``sample(n)``, ``update(rewards)``,
    ``state_dict()`` / ``Curriculum.from_state(state)`` (``benchgen.pipeline.curriculum``)."""


def load(path: str | Path, *, output: Output = "benchgen"):
    """Open a dataset directory: a benchgen ``Dataset`` (default), or its splits as in ``generate``."""
    return _shape(_load_dir(path), output)


# --- evaluation ---------------------------------------------------------------------------------


def _predictions_table(predictions) -> Any:
    """A ``datasets.Dataset`` becomes an arrow table of the prediction columns; others pass through."""
    if type(predictions).__module__.startswith("datasets.") and hasattr(predictions, "with_format"):
        table = predictions.with_format("arrow")[:]
        from benchgen.evaluators.models.protocol import PREDICTION_COLUMNS

        return table.select([c for c in PREDICTION_COLUMNS if c in table.column_names])
    return predictions


def evaluate(dataset, predictions, **options: Any):
    """Score predictions (path, arrow table, DataFrame, dict or ``datasets.Dataset``) on a dataset.

    ``dataset`` is a directory, a ``Dataset`` or a :class:`MemoryDataset`; ``options`` are those
    of :func:`benchgen.evaluators.evaluate` (splits, allow_missing, normalization, settings,
    model_name, model_metadata). A ``datasets.Dataset`` may carry extra columns (e.g. the
    examples themselves): only the predictions contract's columns (evaluators/models/protocol.py) are read.
    """
    from benchgen.evaluators import evaluate as _evaluate

    return _evaluate(dataset, _predictions_table(predictions), **options)


def audit(dataset) -> list[str]:
    """Re-derive every split guarantee (directory, Dataset or MemoryDataset); [] when clean."""
    from benchgen.pipeline.audit import audit as _audit

    if isinstance(dataset, MemoryDataset):  # the audit reads the files themselves: write them first
        with tempfile.TemporaryDirectory(prefix="benchgen-audit-") as tmp:
            return _audit(_load_dir(dataset.save(Path(tmp) / "dataset")))
    return _audit(dataset if isinstance(dataset, Dataset) else _load_dir(dataset))


# --- per-item reward ----------------------------------------------------------------------------
def _normalization(normalization):
    from benchgen.evaluators.scoring.score import Normalization

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


def __getattr__(name: str) -> Any:
    """``Normalization`` (the evaluator's answer comparison) is loaded on first use."""
    if name == "Normalization":
        from benchgen.evaluators.scoring.score import Normalization

        return Normalization
    raise AttributeError(f"module 'benchgen.api' has no attribute {name!r}")


__all__ = ["generate", "load", "evaluate", "audit", "score_answer", "reward_function", "verl_compute_score",
           "read_config", "MemoryDataset", "procedural", "Curriculum"]
