"""``python:MODULE:NAME`` (or ``python:path/to/file.py:NAME``) — any Python object as a model.

``NAME`` may be:

- an adapter object (has ``predict`` and ``supports_loops``): used as is;
- a class: instantiated with no arguments, then used as an adapter if it is one, else called;
- a plain callable ``fn(examples: pyarrow.Table, loops: int | None)``: called once per loop
  count (``None`` when no loops were asked). It returns either a sequence of predictions (one
  per example, in order: answer strings or lists of token ids) or a pyarrow Table / pandas
  DataFrame with ``id`` and ``prediction`` (and optionally ``margin``/``entropy``/``kl_prev``).
  Set ``fn.supports_loops = True`` to accept ``--loops``.

``examples`` holds only what a model may see: ``id``, ``prompt`` and ``input_ids`` (never
``answer``, ``target_ids``, ``bridges`` or other answer-bearing columns). Returned token-id
lists are rendered with the dataset vocabulary.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from benchgen.errors import BenchgenError
from benchgen.evaluators.models import loop_counts, predictions_table
from benchgen.vocab import Vocab


def _user_error(e: BaseException) -> str:
    """``TypeName: message`` of an exception raised by user code; ``sys.exit(N)`` says so."""
    if isinstance(e, SystemExit):
        return f"called sys.exit({e.code!r})"
    return f"{type(e).__name__}: {e}"


def _import_file(arg: str, path: Path):
    """Import ``python:FILE.py:NAME``'s file as a module of its own."""
    if not path.is_file():
        raise BenchgenError(f"--model python:{arg}: file {path} does not exist")
    mod_name = f"_benchgen_user_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    try:
        spec.loader.exec_module(mod)
    except (Exception, SystemExit) as e:  # noqa: BLE001 - user code: report, do not crash or exit
        sys.modules.pop(mod_name, None)
        raise BenchgenError(f"--model python:{arg}: importing {path} failed ({_user_error(e)})") from None
    return mod


def _import_module(arg: str, module: str):
    """Import ``python:MODULE:NAME``'s module, resolved from the working directory first (as ``python -m``
    does; the ``benchgen`` script's own sys.path starts at its bin/ folder, not the working directory)."""
    cwd = str(Path.cwd())
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        importlib.invalidate_caches()  # a module file written a moment ago is found
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.split(".")[0] == e.name.split(".")[0]:
            first = module.split(".")[0]
            raise BenchgenError(
                f"--model python:{arg}: no module named {first!r} in the working directory ({cwd}) or on "
                f"sys.path; run from the folder holding {first}.py, give its file "
                f"(python:path/to/{module.replace('.', '/')}.py:{arg.rpartition(':')[2]}), or set "
                "PYTHONPATH to its folder") from None
        raise BenchgenError(f"--model python:{arg}: importing {module!r} failed ({_user_error(e)})") from None
    except (Exception, SystemExit) as e:  # noqa: BLE001 - user code at import: one line, never an exit
        raise BenchgenError(f"--model python:{arg}: importing {module!r} failed ({_user_error(e)})") from None
    finally:
        if added:
            sys.path.remove(cwd)


def _import_target(arg: str):
    module, sep, attr = arg.rpartition(":")
    if not sep or not module or not attr:
        raise BenchgenError(f"--model python:{arg}: expected python:MODULE:NAME or python:FILE.py:NAME")
    if module.endswith(".py"):
        mod = _import_file(arg, Path(module).expanduser())
    else:
        mod = _import_module(arg, module)
    if not hasattr(mod, attr):
        raise BenchgenError(f"--model python:{arg}: module {module!r} has no attribute {attr!r}")
    return getattr(mod, attr)


class CallableAdapter:
    """Wraps ``fn(examples, loops) -> predictions`` as a ModelAdapter."""

    def __init__(self, fn, name: str, vocab: Vocab | None):
        self.fn = fn
        self.name = name
        self.vocab = vocab
        self.supports_loops = bool(getattr(fn, "supports_loops", False))

    def _floats(self, out: pa.Table, col: str) -> pa.Array:
        """A returned ``margin``/``entropy``/``kl_prev`` column as float64 (one line when it is not numeric)."""
        values = out.column(col).combine_chunks()
        if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type) or pa.types.is_null(values.type)):
            raise BenchgenError(f"model {self.name}: returned a {col!r} column of {values.type}; expected numbers")
        return values.cast(pa.float64())

    def _texts(self, out, examples: pa.Table) -> tuple[pa.Array, dict]:
        n = examples.num_rows
        extra = {}
        if type(out).__name__ == "DataFrame":
            out = pa.Table.from_pandas(out, preserve_index=False)
        if isinstance(out, pa.Table):
            for col in ("id", "prediction"):
                if col not in out.column_names:
                    raise BenchgenError(f"model {self.name}: returned a table without an {col!r} column "
                                        f"(has: {', '.join(out.column_names)})")
            if out.num_rows != n:
                raise BenchgenError(f"model {self.name}: returned {out.num_rows} rows for {n} examples")
            if not out.column("id").combine_chunks().equals(examples.column("id").combine_chunks()):
                # reorder to the examples' order (unknown/missing ids are caught by run_model)
                import pyarrow.compute as pc

                idx = pc.index_in(examples.column("id"), value_set=out.column("id").combine_chunks())
                if idx.null_count:
                    raise BenchgenError(f"model {self.name}: returned ids that do not match the batch")
                out = out.take(idx)
            for col in ("margin", "entropy", "kl_prev"):
                if col in out.column_names:
                    extra[col] = self._floats(out, col)
            preds = out.column("prediction").combine_chunks()
        else:
            if isinstance(out, (str, bytes)) or not isinstance(out, Sequence) and not hasattr(out, "__len__"):
                raise BenchgenError(f"model {self.name}: expected a sequence of {n} predictions or a table, "
                                    f"got {type(out).__name__}")
            if len(out) != n:
                raise BenchgenError(f"model {self.name}: returned {len(out)} predictions for {n} examples")
            try:
                preds = pa.array(list(out))
            except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                raise BenchgenError(f"model {self.name}: predictions are neither strings nor token-id lists ({e})") from None
        if pa.types.is_list(preds.type) or pa.types.is_large_list(preds.type):
            if self.vocab is None:
                raise BenchgenError(f"model {self.name}: returned token ids but no vocabulary is available")
            if not pa.types.is_integer(preds.type.value_type) and len(preds.flatten()):
                raise BenchgenError(f"model {self.name}: token-id predictions must be integers")
            import numpy as np

            flat = np.asarray(preds.flatten().cast(pa.int64()))
            if len(flat) and (flat.min() < 0 or flat.max() >= len(self.vocab)):
                raise BenchgenError(f"model {self.name}: token ids outside the vocabulary [0, {len(self.vocab)})")
            preds = self.vocab.render(preds.cast(pa.list_(pa.int32())))
        elif pa.types.is_null(preds.type):
            preds = preds.cast(pa.string())
        elif not (pa.types.is_string(preds.type) or pa.types.is_large_string(preds.type)):
            raise BenchgenError(f"model {self.name}: predictions must be strings or token-id lists, "
                                f"got {preds.type}")
        return preds, extra

    def predict(self, examples: pa.Table, loops: Sequence[int] | None) -> pa.Table:
        counts = loop_counts(loops, self.supports_loops, self.name)
        texts, extras = [], []
        for t in counts:
            try:
                out = self.fn(examples, t)
            except BenchgenError:
                raise
            except (Exception, SystemExit) as e:  # noqa: BLE001 - user code: report one clear line, never exit
                what = _user_error(e) if isinstance(e, SystemExit) else f"raised {_user_error(e)}"
                raise BenchgenError(f"model {self.name}: {what} during predict") from None
            preds, extra = self._texts(out, examples)
            texts.append(preds)
            extras.append(extra)
        table = predictions_table(examples.column("id").combine_chunks(), texts, counts)
        for col in ("margin", "entropy", "kl_prev"):
            if extras and all(col in e for e in extras):
                table = table.append_column(col, pa.concat_arrays([e[col] for e in extras]))
        return table


def load(arg: str, *, vocab: Vocab | None = None):
    """Factory for ``python:MODULE:NAME`` / ``python:FILE.py:NAME``."""
    target = _import_target(arg)
    name = f"python:{arg.rpartition(':')[2]}"
    if inspect.isclass(target):
        try:
            target = target()
        except (Exception, SystemExit) as e:  # noqa: BLE001
            raise BenchgenError(f"--model python:{arg}: constructing {target.__name__}() failed "
                                f"({_user_error(e)})") from None
    if hasattr(target, "predict") and hasattr(target, "supports_loops"):
        if not getattr(target, "name", None):
            target.name = name
        return target
    if not callable(target):
        raise BenchgenError(f"--model python:{arg}: {arg.rpartition(':')[2]!r} is not callable")
    return CallableAdapter(target, name, vocab)
