"""Config helpers shared by every task: integer-set parsing, preset + override resolution."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from benchgen.errors import ConfigError


def parse_int_set(text: str | int | list | tuple, option: str = "value") -> tuple[int, ...]:
    """Parse ``"2-5"``, ``"2,4,8"`` or ``"2-5,8"`` (or a list/int) into a sorted tuple of ints."""
    if isinstance(text, int):
        return (text,)
    if isinstance(text, (list, tuple)):
        items = [parse_int_set(x, option) for x in text]
        return tuple(sorted({v for it in items for v in it}))
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
    try:
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind == "float":
            return float(value)
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
        return tuple(sorted(set(pairs)))
    try:
        return tuple(sorted({(int(d), int(w)) for d, w in value}))
    except (TypeError, ValueError):
        raise ConfigError(option, f"expected a list of (depth, width) pairs, got {value!r}") from None


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
