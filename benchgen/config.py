"""Config helpers shared by every task: integer-set parsing, preset + override resolution."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from benchgen.errors import ConfigError

# Sizes beyond these are refused with the limit named (they would run for minutes or exhaust memory).
MAX_INT_SET = 1000          # values in one integer set (e.g. --train-hops 2-1000)
MAX_INT_VALUE = 10**9       # any integer option (sizes, depths, widths)
MAX_SEED = 2**63 - 1
MAX_COUNT = 2_000_000       # one per-hop / per-cell count
MAX_ENTITIES = 1_000_000
MAX_TRIPLES = 20_000_000    # khop: num-entities x out-degree
MAX_ROWS = 20_000_000       # estimated rows of a whole dataset
MAX_TOKENS = 2_000_000_000  # estimated input tokens of a whole dataset


def parse_int_set(text: str | int | list | tuple, option: str = "value") -> tuple[int, ...]:
    """Parse ``"2-5"``, ``"2,4,8"`` or ``"2-5,8"`` (or a list/int) into a sorted tuple of ints."""
    if isinstance(text, (bool, float)):
        raise ConfigError(option, f"expected integers like '2-5', '2,4,8' or '2-5,8', got {text!r}")
    if isinstance(text, int):
        if abs(text) > MAX_INT_VALUE:
            raise ConfigError(option, f"values must be at most {MAX_INT_VALUE:,} in size, got {text}")
        return (text,)
    if isinstance(text, (list, tuple)):
        if len(text) > MAX_INT_SET:
            raise ConfigError(option, f"at most {MAX_INT_SET} values in one set, got {len(text)}")
        items = [parse_int_set(x, option) for x in text]
        out = tuple(sorted({v for it in items for v in it}))
        if len(out) > MAX_INT_SET:
            raise ConfigError(option, f"at most {MAX_INT_SET} values in one set, got {len(out)}")
        return out
    out: set[int] = set()
    bad = ConfigError(option, f"expected integers like '2-5', '2,4,8' or '2-5,8', got {text!r}")
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        lo, sep, hi = part[1:].partition("-")
        try:
            lo_i, hi_i = (int(part[0] + lo), int(hi)) if sep else (int(part), int(part))
        except ValueError:
            raise bad from None
        if hi_i < lo_i:
            raise ConfigError(option, f"range '{part}' is empty (expected lo-hi with lo <= hi)")
        if max(abs(lo_i), abs(hi_i)) > MAX_INT_VALUE:
            raise ConfigError(option, f"values must be at most {MAX_INT_VALUE:,} in size, got {part!r}")
        if hi_i - lo_i + 1 + len(out) > MAX_INT_SET:
            raise ConfigError(option, f"at most {MAX_INT_SET} values in one set, got {text!r}")
        out.update(range(lo_i, hi_i + 1))
    if not out:
        raise ConfigError(option, f"expected at least one integer, got {text!r}")
    return tuple(sorted(out))


def format_int_set(values: tuple[int, ...] | list[int]) -> str:
    """Compact text form of an integer set: ``(2,3,4,5,8)`` -> ``"2-5,8"``."""
    vals = sorted(values)
    parts, i = [], 0
    while i < len(vals):
        j = i
        while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
            j += 1
        parts.append(str(vals[i]) if i == j else f"{vals[i]}-{vals[j]}")
        i = j + 1
    return ",".join(parts)


def field_kind(f: dataclasses.Field) -> tuple[str, Any]:
    """Classify a config field for parsing/CLI: ('intset'|'int'|'float'|'str'|'bool'|'choice'|'cells', extra)."""
    tp = f.type if not isinstance(f.type, str) else eval(f.type, vars(typing))  # noqa: S307
    optional = False
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional, tp = True, args[0]
        origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "choice", (typing.get_args(tp), optional)
    if origin is tuple:
        args = typing.get_args(tp)
        if args and typing.get_origin(args[0]) is tuple:
            return "cells", optional
        return "intset", optional
    return {int: "int", float: "float", str: "str", bool: "bool"}.get(tp, "str"), optional


def coerce(f: dataclasses.Field, value: Any) -> Any:
    """Convert a CLI/JSON value to the field's type (int sets from strings, etc.)."""
    kind, extra = field_kind(f)
    if value is None:
        return None
    if kind == "intset":
        return parse_int_set(value, f.name)
    if kind == "cells":
        return parse_cells(value, f.name)
    if kind == "choice":
        choices = extra[0]
        if value not in choices:
            raise ConfigError(f.name, f"expected one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    if kind == "int":
        try:
            if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
                raise ValueError
            v = int(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f.name, f"expected int, got {value!r}") from None
        if f.name == "seed" and not 0 <= v <= MAX_SEED:
            raise ConfigError(f.name, f"expected a seed in 0..2^63-1, got {v}")
        if abs(v) > MAX_INT_VALUE and f.name != "seed":
            raise ConfigError(f.name, f"expected at most {MAX_INT_VALUE:,}, got {v}")
        return v
    if kind == "float":
        try:
            v = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f.name, f"expected float, got {value!r}") from None
        if not math.isfinite(v):
            raise ConfigError(f.name, f"expected a finite number, got {value!r}")
        return v
    try:
        if kind == "bool":
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            return bool(value)
    except (TypeError, ValueError):
        raise ConfigError(f.name, f"expected {kind}, got {value!r}") from None
    return value


def parse_cells(value: Any, option: str) -> tuple[tuple[int, int], ...]:
    """Parse held-out (depth, width) cells: ``"8x3,16x5"`` or a list of pairs."""
    if isinstance(value, str):
        pairs = []
        for part in value.replace(" ", "").split(","):
            if not part:
                continue
            try:
                d, w = part.lower().split("x")
                pairs.append((int(d), int(w)))
            except ValueError:
                raise ConfigError(option, f"expected cells like '8x3,16x5' (depth x width), got {value!r}") from None
        return _check_cells(tuple(sorted(set(pairs))), option)
    try:
        cells = tuple(sorted({(int(d), int(w)) for d, w in value}))
    except (TypeError, ValueError):
        raise ConfigError(option, f"expected a list of (depth, width) pairs, got {value!r}") from None
    return _check_cells(cells, option)


def _check_cells(cells: tuple[tuple[int, int], ...], option: str) -> tuple[tuple[int, int], ...]:
    if len(cells) > MAX_INT_SET:
        raise ConfigError(option, f"at most {MAX_INT_SET} cells, got {len(cells)}")
    if any(abs(x) > MAX_INT_VALUE for c in cells for x in c):
        raise ConfigError(option, f"depth and width must be at most {MAX_INT_VALUE:,}")
    return cells


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


def build_config(cls: type, presets: dict[str, dict], preset: str | None, overrides: dict) -> Any:
    """Defaults <- preset <- overrides (None values ignored), coerced and validated."""
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in presets:
            raise ConfigError("preset", f"unknown preset {preset!r} (expected one of {', '.join(presets)})")
        values.update(presets[preset]["config"])
    names = {f.name: f for f in dataclasses.fields(cls)}
    given = {k for k, v in overrides.items() if v is not None}
    for pair in getattr(cls, "__exclusive__", ()):  # an override of one alternative clears the other
        for k in pair:
            if k in given:
                values.update({o: None for o in pair if o != k and o not in given})
    for k, v in overrides.items():
        if v is None:
            continue
        if k not in names:
            raise ConfigError(k, f"unknown option (expected one of {', '.join(names)})")
        values[k] = v
    cfg = cls(**{k: coerce(names[k], v) for k, v in values.items()})
    if hasattr(cfg, "validate"):
        cfg.validate()
    check_size(cfg)
    return cfg


def to_dict(cfg: Any) -> dict:
    """JSON-ready dict of a config dataclass (tuples become lists)."""
    def conv(v):
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        return v
    return {k: conv(v) for k, v in dataclasses.asdict(cfg).items()}


def field_help(f: dataclasses.Field) -> str:
    return f.metadata.get("help", "")
