"""Dataset size limits every task's config checks before any work (``Config.check_size``).

Sizes beyond these are refused with the limit named: they would run for minutes or exhaust memory.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from benchgen.errors import ConfigError

MAX_COUNT = 2_000_000       # one per-hop / per-cell count
MAX_ENTITIES = 1_000_000
MAX_TRIPLES = 20_000_000    # khop: num-entities x out-degree
MAX_ROWS = 20_000_000       # estimated rows of a whole dataset
MAX_TOKENS = 2_000_000_000  # estimated input tokens of a whole dataset


def check_size(cfg: Any) -> None:
    """Refuse configs whose dataset would be unreasonably large (rough upper estimate, limit named).

    Generic over tasks: depths are the integer sets named *hops*/*operands*, widths those named
    *widths*/*lengths*; counts are the *_per_hop/*_per_cell fields.
    """
    d = dataclasses.asdict(cfg)
    for k, v in d.items():
        if (k.endswith("_per_hop") or k.endswith("_per_cell")) and isinstance(v, int) and v > MAX_COUNT:
            raise ConfigError(k, f"expected at most {MAX_COUNT:,} per hop/cell, got {v:,}")
    if isinstance(d.get("num_entities"), int) and d["num_entities"] > MAX_ENTITIES:
        raise ConfigError("num_entities", f"expected at most {MAX_ENTITIES:,}, got {d['num_entities']:,}")
    triples = 0
    if isinstance(d.get("num_entities"), int) and isinstance(d.get("out_degree"), int):
        triples = max(0, d["num_entities"]) * max(0, d["out_degree"])
        if triples > MAX_TRIPLES:
            raise ConfigError("out_degree", f"num-entities x out-degree = {triples:,} triples; the limit is {MAX_TRIPLES:,}")
    def ints(word: str) -> list[int]:
        return [x for k, v in d.items() if word in k and isinstance(v, (list, tuple)) for x in v if isinstance(x, int)]

    depths = ints("hops") + ints("operands")
    digits, lengths = ints("widths"), ints("lengths")  # digits per operand; whole sequence lengths
    widths = digits + lengths
    held = [c for k, v in d.items() if k == "held_out" and isinstance(v, (list, tuple)) for c in v]
    depths += [c[0] for c in held]
    widths += [c[1] for c in held]
    n_cells = max(1, len(set(depths))) * max(1, len(set(widths))) + len(held)
    per = sum(v for k, v in d.items() if (k.endswith("_per_hop") or k.endswith("_per_cell")) and isinstance(v, int))
    ratio = d.get("inferred_ratio")
    inferred = int(ratio * triples) if isinstance(ratio, (int, float)) and math.isfinite(ratio) else 0
    rows = n_cells * max(0, per) + triples + inferred
    if hasattr(cfg, "estimated_rows"):  # a task that knows its split sizes estimates them itself
        rows = cfg.estimated_rows()
    max_d = max([1, *depths])
    per_row = max(max_d * (max([1, *digits]) + 1), max([1, *lengths]), max_d) + 4
    tokens = rows * per_row
    if rows > MAX_ROWS:
        raise ConfigError("size", f"this config would generate about {rows:,} rows; the limit is {MAX_ROWS:,} "
                                  "(lower the per-hop/per-cell counts or the number of depths)")
    if tokens > MAX_TOKENS:
        raise ConfigError("size", f"this config would generate about {tokens:,} tokens; the limit is "
                                  f"{MAX_TOKENS:,} (lower the counts, depths or widths)")
