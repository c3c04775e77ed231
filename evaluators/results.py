"""results.json: versioned results (dataset fingerprint, model, cells, metrics) and atomic output.

Cells are the ground truth: every metric in ``metrics`` can be recomputed from them (except
margins, halting and the oracle best loop, which need per-row outcomes and are stored as
computed). ``Results.from_json`` round-trips ``to_json`` exactly.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from benchgen.evaluators.scoring import CELL_COLUMNS

from benchgen import __version__
from benchgen.errors import BenchgenError

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
        return None if math.isnan(float(x)) else float(x)
    return x


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
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(path, self.dumps())
        return path

    @classmethod
    def from_json(cls, source: str | Path | dict) -> Results:
        """Load from a results.json path (or its parsed dict); clear errors for bad files."""
        where = "results"
        if isinstance(source, dict):
            data = source
        else:
            path = Path(source)
            if path.is_dir():
                path = path / RESULTS
            where = str(path)
            if not path.is_file():
                raise BenchgenError(f"{where}: does not exist")
            try:
                data = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise BenchgenError(f"{where}: corrupt JSON ({e})") from None
        if not isinstance(data, dict):
            raise BenchgenError(f"{where}: expected a JSON object")
        version = data.get("schema_version")
        if version is None:
            raise BenchgenError(f"{where}: missing key 'schema_version' (not a benchgen results file?)")
        if version != SCHEMA_VERSION:
            raise BenchgenError(f"{where}: schema_version {version} is not supported (expected {SCHEMA_VERSION})")
        for key in ("dataset", "model", "cells", "metrics"):
            if key not in data:
                raise BenchgenError(f"{where}: missing key '{key}'")
        try:
            cells = cells_from_records(data["cells"])
        except (KeyError, TypeError, ValueError) as e:
            raise BenchgenError(f"{where}: malformed 'cells' ({e})") from None
        return cls(dataset=data["dataset"], model=data["model"],
                   normalization=data.get("normalization", {}), coverage=data.get("coverage", {}),
                   cells=cells, metrics=data["metrics"], settings=data.get("settings", {}),
                   schema_version=version, benchgen_version=data.get("benchgen_version", "unknown"))

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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_outputs(results: Results, outdir: str | Path, *, html: bool = False, plots: bool = True,
                  overwrite: bool = False) -> Path:
    """Write results.json, report.md, plots/*.png (and report.html) into ``outdir`` atomically.

    Everything is built in a temporary directory beside ``outdir`` and renamed into place, so
    an interrupted run never leaves a half-written results directory.
    """
    from benchgen.evaluators.report import render_into

    from benchgen.atomic import atomic_dir

    with atomic_dir(outdir, overwrite) as tmp:
        (tmp / RESULTS).write_text(results.dumps())
        render_into(results, tmp, html=html, plots=plots)
    return Path(outdir)
