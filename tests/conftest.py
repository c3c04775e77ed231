"""Test-wide setup: Triton kernels run through the interpreter on CPU (set before any import)."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
