"""Hub-ready dataset card (README.md): YAML metadata the Hugging Face Hub reads, then prose.

The YAML is written with ``yaml.safe_dump`` (never string concatenation) from plain data, so the
card is the same bytes whatever else is installed; the tests parse it back with
``huggingface_hub.DatasetCard`` when that package is present. Split naming: benchgen's files,
ids and ``split`` column say ``valid``; the card's ``configs:`` maps those files to the Hub's
``validation`` split, so ``datasets.load_dataset(DIR)`` yields ``validation`` while older
benchgen readers (manifest, shard names) are untouched. Task extras that are tables (khop's
``kg.parquet``) are their own config, e.g. ``load_dataset(DIR, "kg")``.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from benchgen.pipeline.validity import card_section
from benchgen.schema import hf_split
from benchgen.task import Task

LICENSE = "apache-2.0"  # the generator's license; the rows are synthetic

GUARANTEES = {
    "train": "every training example (khop: every atomic fact plus in-distribution compositions)",
    "valid": "same distribution as train; held-out queries",
    "test_id": "same distribution as train; no query occurs in train",
    "test_systematic": "composes pieces each seen in training but never composed in training",
    "test_interp": "depths strictly inside the trained range that were never trained",
    "test_depth": "deeper than every training depth",
}


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket for ``n`` rows."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
    return next((label for bound, label in bounds if n < bound), "1B<n<10B")


def card_metadata(manifest: dict, pretty_name: str = "") -> dict[str, Any]:
    """The card's YAML header as plain data (configs, license, categories, tags)."""
    task = manifest["task"]
    rows = sum(int(info["rows"]) for info in manifest["splits"].values())
    configs: list[dict[str, Any]] = [{
        "config_name": "default", "default": True,
        "data_files": [{"split": hf_split(s), "path": f"data/{s}-*.parquet"} for s in manifest["splits"]],
    }]
    for name in sorted(manifest.get("extras", {})):
        if name.endswith(".parquet"):
            configs.append({"config_name": name.removesuffix(".parquet"),
                            "data_files": [{"split": "train", "path": name}]})
    return {
        "pretty_name": f"benchgen {task}: {pretty_name or task}",
        "license": LICENSE,
        "language": ["en"],
        "task_categories": ["text-generation", "question-answering"],
        "size_categories": [size_category(rows)],
        "tags": ["benchgen", task, "implicit-reasoning", "synthetic", "multi-step-reasoning"],
        "configs": configs,
    }


def _validity_section(validity: Any) -> list[str]:
    """Markdown for the manifest's validity record (non-reasoning baselines vs chance)."""
    if not validity:
        return []
    if isinstance(validity, dict) and "splits" in validity:  # the record benchgen.pipeline.validity writes
        return card_section(validity)
    lines = ["## Validity", "",
             "Non-reasoning baselines fitted on train, scored on every split (a split measures "
             "reasoning only if none of them beats chance there); `benchgen baselines DIR` re-runs them.", ""]
    rows = validity.get("baselines") if isinstance(validity, dict) else validity
    if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
        keys = list(dict.fromkeys(k for r in rows for k in r))
        lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(_cell(r.get(k)) for k in keys) + " |" for r in rows]
    elif isinstance(rows, dict) and rows and all(isinstance(v, dict) for v in rows.values()):
        cols = list(dict.fromkeys(k for v in rows.values() for k in v))
        lines += ["| baseline | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        lines += [f"| {name} | " + " | ".join(_cell(v.get(c)) for c in cols) + " |" for name, v in rows.items()]
    else:
        lines += ["```json", json.dumps(validity, indent=1, sort_keys=True, default=str), "```"]
    if isinstance(validity, dict):
        extra = {k: v for k, v in validity.items() if k != "baselines" and not isinstance(v, (list, dict))}
        lines += ["", *(f"- {k}: {_cell(v)}" for k, v in extra.items())] if extra else []
    return [*lines, ""]


def _cell(v: Any) -> str:
    """A table cell: floats to 3 decimals, nested values as compact JSON."""
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True, default=str).replace("|", "\\|")
    return "" if v is None else str(v).replace("|", "\\|")


def render_card(manifest: dict, task: Task | None = None) -> str:
    """Dataset card: Hub YAML (configs, license, categories), splits, guarantees, validity, BibTeX.

    ``task`` gives the prose, pretty name and citations (none for a dataset of no registered task)."""
    task_name = manifest["task"]
    description = task.about if task else ""
    meta = yaml.safe_dump(card_metadata(manifest, task.pretty_name if task else ""), sort_keys=False,
                          allow_unicode=True, width=1000)
    rows = ["| split (Hub name) | rows | depths (depth: rows) | guarantee |", "|---|---|---|---|"]
    for split, info in manifest["splits"].items():
        depths = ", ".join(f"{d}: {n}" for d, n in info["depths"].items())
        name = split if hf_split(split) == split else f"{split} ({hf_split(split)})"
        rows.append(f"| {name} | {info['rows']} | {depths} | {GUARANTEES.get(split, '')} |")
    papers = list(task.citations) if task else []
    extras = [n.removesuffix(".parquet") for n in sorted(manifest.get("extras", {})) if n.endswith(".parquet")]
    load = ["```python", "from datasets import load_dataset", 'ds = load_dataset("path/to/this/dir")  '
            "# splits: " + ", ".join(hf_split(s) for s in manifest["splits"])]
    load += [f'{e} = load_dataset("path/to/this/dir", "{e}")["train"]' for e in extras]
    cfg = json.dumps(manifest["config"], indent=1, sort_keys=True)
    return "\n".join([
        "---", meta.rstrip("\n"), "---", "",
        f"# benchgen `{task_name}` dataset", "",
        description.strip(), "",
        f"Generated by benchgen {manifest.get('benchgen_version', '?')} with seed {manifest.get('seed')}; "
        f"fingerprint `{manifest['fingerprint'][:16]}`. The same config and seed give byte-identical files.", "",
        "## Splits", "", *rows, "",
        "The `valid` files are the Hub's `validation` split; the `split` column and ids keep `valid`.", "",
        *_validity_section(manifest.get("validity")),
        "## Load", "", *load, "```", "",
        "Verify every split guarantee from the files: `benchgen audit DIR`.", "",
        "## Config", "", "```json", cfg, "```", "",
        *(["## Citation", "", "```bibtex", "\n\n".join(papers), "```", ""] if papers else []),
    ])
