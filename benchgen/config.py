"""Config helpers shared by tasks and models: value parsing, presets, ``--set`` overrides, config files."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchgen.errors import BenchgenError, ConfigError

# Sizes beyond these are refused with the limit named (they would run for minutes or exhaust memory).
MAX_INT_SET = 1000          # values in one integer set (e.g. --train-hops 2-1000)
MAX_INT_VALUE = 10**9       # any integer option (sizes, depths, widths)
MAX_SEED = 2**63 - 1


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


@dataclass(frozen=True)
class Preset:
    """A named published or CPU-sized setting: a description and the config values it sets.

    Data presets (``tasks/*/config.py``) hold the task config's fields; model presets
    (``reference_models/config.py``) hold ``{"model": {...}, "train": {...}}``. Both are resolved
    by :func:`build_config` and overridden with the one syntax of :func:`parse_sets`."""

    description: str
    config: Mapping[str, Any]


def parse_sets(items: Sequence[str], sections: Sequence[str] | None = None, option: str = "set") -> dict:
    """``--set KEY=VALUE`` items as a dict (``SECTION.KEY=VALUE`` into ``{SECTION: {KEY: VALUE}}``).

    The one override syntax for data and model presets: ``--set train_hops=2-4`` on ``generate``,
    ``--set model.loops=8`` on ``train``; values stay text and are coerced by the config's field type.
    """
    out: dict[str, Any] = {s: {} for s in sections or ()}
    for item in items:
        key, sep, value = str(item).partition("=")
        key = key.strip().replace("-", "_")
        if sections:
            section, dot, name = key.partition(".")
            if not sep or not dot or not name or section not in out:
                raise ConfigError(option, f"expected {' or '.join(f'{s}.KEY=VALUE' for s in sections)}, got {item!r}")
            out[section][name] = value.strip()
        else:
            if not sep or not key or "." in key:
                raise ConfigError(option, f"expected KEY=VALUE (a config option), got {item!r}")
            out[key] = value.strip()
    return out


def read_config(path: str | Path, option: str = "--config") -> dict:
    """Options from a JSON or YAML file (keys as the CLI's option names, ``-`` or ``_``)."""
    import json

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise BenchgenError(f"{option} {path}: cannot read ({e.strerror})") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # yaml.YAMLError / json.JSONDecodeError: both one-line messages
        raise BenchgenError(f"{option} {path}: not valid {path.suffix.lstrip('.') or 'JSON'} "
                            f"({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise BenchgenError(f"{option} {path}: expected a mapping of option names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def build_config(cls: type, presets: Mapping[str, Preset], preset: str | None, overrides: dict,
                 section: str | None = None) -> Any:
    """Defaults <- preset <- overrides (None values ignored), coerced and validated.

    ``section`` prefixes option names in errors (``model.loops``). A config class may define
    ``validate()`` (impossible values) and ``check_size()`` (datasets too large to generate).
    """
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in presets:
            raise ConfigError("preset", f"unknown preset {preset!r} (expected one of {', '.join(presets)})")
        values.update(presets[preset].config)
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
            name = f"{section}.{k}" if section else k
            raise ConfigError(name, f"unknown option (expected one of {', '.join(names)})")
        values[k] = v
    cfg = cls(**{k: coerce(names[k], v) for k, v in values.items()})
    if hasattr(cfg, "validate"):
        cfg.validate()
    if hasattr(cfg, "check_size"):
        cfg.check_size()
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
