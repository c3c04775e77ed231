"""Keep heavy optional imports off the generate path (a `generate` process is mostly start-up)."""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Iterator
from contextlib import contextmanager


class _HidePandas(importlib.abc.MetaPathFinder):
    """Answers ``import pandas`` with ModuleNotFoundError (pyarrow then takes its no-pandas path)."""

    def find_spec(self, name, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError("pandas is not used while generating", name=name)
        return None


@contextmanager
def pandas_hidden() -> Iterator[None]:
    """Run a block with pandas unimportable, unless it is already imported.

    pyarrow probes for pandas on its first ``pa.array`` / ``Array.to_numpy`` and so imports it
    (0.2-0.5 s, a sixth of a small ``generate`` process) although generation never hands pyarrow
    a pandas object. pyarrow remembers the failed probe for the rest of the process, so only the
    CLI's one-shot ``generate`` uses this, never the in-process Python API.
    """
    if "pandas" in sys.modules:
        yield
        return
    finder = _HidePandas()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
