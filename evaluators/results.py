"""results.json: versioned results (dataset fingerprint, model, cells, metrics) and atomic output.

Cells are the ground truth: every metric in ``metrics`` can be recomputed from them (except
margins, halting and the oracle best loop, which need per-row outcomes and are stored as
computed). ``Results.from_json`` round-trips ``to_json`` exactly.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchgen.atomic import restore_interrupted
from benchgen.errors import BenchgenError
from benchgen.evaluators.scoring.score import CELL_COLUMNS
from benchgen.version import __version__

SCHEMA_VERSION = 1
RESULTS = "results.json"


def _plain(x):
    """JSON-safe Python values (numpy scalars -> Python, NaN/NA -> None)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return [_plain(v) for v in x.tolist()]
    if x is None or x is pd.NA:
        return None
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None  # NaN/inf are not JSON: null
    return x


# metrics sections compute_metrics always writes as objects; settings that are numbers
_METRIC_SECTIONS = ("per_split", "depth_curve", "depth_extrapolation", "overthinking", "depth_reach", "margins",
                    "halting", "oracle_best_loop", "t_first", "exit_rules", "saturation", "probes")
_NUMERIC_SETTINGS = ("tau", "delta", "bootstrap", "bootstrap_seed", "seed", "halt_kl", "halt_entropy", "primary_loops")


def validate_results_json(data: object, where: str) -> None:
    """Check the structure of a parsed results.json; BenchgenError naming the field otherwise."""
    def bad(field: str, expected: str) -> BenchgenError:
        top = field.split("[")[0].split(".")[0]
        detail = f"{field}: expected {expected}" if field != top else f"expected {expected}"
        return BenchgenError(f"{where}: malformed '{top}' ({detail})")

    if not isinstance(data, dict):
        raise BenchgenError(f"{where}: expected a JSON object")
    version = data.get("schema_version")
    if version is None:
        raise BenchgenError(f"{where}: missing key 'schema_version' (not a benchgen results file?)")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise BenchgenError(f"{where}: schema_version {version!r} is not supported (expected {SCHEMA_VERSION})")
    for key in ("dataset", "model", "cells", "metrics"):
        if key not in data:
            raise BenchgenError(f"{where}: missing key '{key}'")
    for key in ("dataset", "model", "metrics"):
        if not isinstance(data[key], dict):
            raise bad(key, "an object")
    for key in ("normalization", "coverage", "settings"):
        if key in data and not isinstance(data[key], dict):
            raise bad(key, "an object")
    fp = data["dataset"].get("fingerprint")
    if fp is not None and not isinstance(fp, str):
        raise bad("dataset.fingerprint", "a string")
    if not isinstance(data["model"].get("name", ""), (str, int, float)):
        raise bad("model.name", "a string")
    if not isinstance(data["cells"], list):
        raise bad("cells", "a list of cell objects")
    num = (int, float)
    for i, c in enumerate(data["cells"]):
        if not isinstance(c, dict):
            raise bad(f"cells[{i}]", "an object")
        for k in CELL_COLUMNS:
            if k not in c:
                raise bad(f"cells[{i}].{k}", "a value (key missing)")
        if not isinstance(c["split"], str):
            raise bad(f"cells[{i}].split", "a string")
        for k in ("depth", "n", "correct"):
            if isinstance(c[k], bool) or not isinstance(c[k], int):
                raise bad(f"cells[{i}].{k}", "an integer")
        if c["loops"] is not None and (isinstance(c["loops"], bool) or not isinstance(c["loops"], int)):
            raise bad(f"cells[{i}].loops", "an integer or null")
        for k in ("accuracy", "ci_low", "ci_high"):
            if c[k] is not None and (isinstance(c[k], bool) or not isinstance(c[k], num)):
                raise bad(f"cells[{i}].{k}", "a number or null")
    for key in _METRIC_SECTIONS:
        if key in data["metrics"] and not isinstance(data["metrics"][key], dict):
            raise bad(f"metrics.{key}", "an object")
    pl = data["metrics"].get("primary_loops")
    if pl is not None and (isinstance(pl, bool) or not isinstance(pl, int)):
        raise bad("metrics.primary_loops", "an integer or null")
    for key in _NUMERIC_SETTINGS:
        v = data.get("settings", {}).get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise bad(f"settings.{key}", "a number")
    for split, v in data["metrics"].get("per_split", {}).items():
        for k in ("n", "correct", "accuracy"):
            x = v.get(k) if isinstance(v, dict) else None
            if x is not None and (isinstance(x, bool) or not isinstance(x, (int, float))):
                raise bad(f"metrics.per_split.{split}.{k}", "a number")
    per_split = data["metrics"].get("per_split", {})
    if not isinstance(per_split, dict) or not all(isinstance(v, dict) for v in per_split.values()):
        raise bad("metrics.per_split", "an object of split -> object")
    curves = data["metrics"].get("depth_curve", {})
    if not all(isinstance(v, list) and all(isinstance(p, dict) for p in v) for v in curves.values()):
        raise bad("metrics.depth_curve", "an object of split -> list of points")


def cells_to_records(cells: pd.DataFrame) -> list[dict]:
    cols = {c: cells[c].tolist() for c in CELL_COLUMNS}
    return [_plain(dict(zip(CELL_COLUMNS, row))) for row in zip(*cols.values())]


def cells_from_records(records: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame.from_records(records, columns=CELL_COLUMNS)
    df["loops"] = pd.array(df["loops"].tolist(), dtype="Int64")
    for c in ("depth", "n", "correct"):
        df[c] = df[c].astype(np.int64)
    for c in ("accuracy", "ci_low", "ci_high"):
        df[c] = df[c].astype(np.float64)
    return df


@dataclass
class Results:
    """One evaluation: what was scored (dataset, model, normalisation, coverage), cells, metrics."""

    dataset: dict
    model: dict
    normalization: dict
    coverage: dict
    cells: pd.DataFrame
    metrics: dict
    settings: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    benchgen_version: str = __version__

    def to_json(self) -> dict:
        return _plain({
            "schema_version": self.schema_version,
            "benchgen_version": self.benchgen_version,
            "dataset": self.dataset,
            "model": self.model,
            "normalization": self.normalization,
            "settings": self.settings,
            "coverage": self.coverage,
            "cells": cells_to_records(self.cells),
            "metrics": self.metrics,
        })

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, allow_nan=False) + "\n"

    def save(self, path: str | Path) -> Path:
        """Write results.json atomically."""
        from benchgen.atomic import write_file

        return write_file(Path(path), self.dumps())

    @classmethod
    def from_json(cls, source: str | Path | dict) -> Results:
        """Load from a results.json path (or its parsed dict); clear errors for bad files."""
        where = "results"
        if isinstance(source, dict):
            data = source
        else:
            path = Path(source)
            if not path.exists():  # a results directory whose replacement was killed inside the swap
                note = restore_interrupted(path.parent if path.name == RESULTS else path)
                if note:
                    raise BenchgenError(f"{path}: does not exist; {note}")
            if path.is_dir():
                path = path / RESULTS
            where = str(path)
            if not path.is_file():
                raise BenchgenError(f"{where}: does not exist")
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
                raise BenchgenError(f"{where}: corrupt JSON ({str(e).splitlines()[0][:200]})") from None
            except OSError as e:
                raise BenchgenError(f"{where}: cannot be read ({e.strerror})") from None
        validate_results_json(data, where)
        try:
            cells = cells_from_records(data["cells"])
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise BenchgenError(f"{where}: malformed 'cells' ({e})") from None
        return cls(dataset=data["dataset"], model=data["model"],
                   normalization=data.get("normalization", {}), coverage=data.get("coverage", {}),
                   cells=cells, metrics=data["metrics"], settings=data.get("settings", {}),
                   schema_version=data["schema_version"], benchgen_version=str(data.get("benchgen_version", "unknown")))

    # small conveniences for readers (leaderboard, notebooks)
    @property
    def model_name(self) -> str:
        return str(self.model.get("name", "model"))

    @property
    def fingerprint(self) -> str | None:
        return self.dataset.get("fingerprint")

    def accuracy(self, split: str) -> float | None:
        return self.metrics.get("per_split", {}).get(split, {}).get("accuracy")


def _atomic_write_text(path: Path, text: str) -> None:
    """Kept for callers of the old name: the one atomic-write helper (benchgen.atomic.write_file)."""
    from benchgen.atomic import write_file

    write_file(path, text)
