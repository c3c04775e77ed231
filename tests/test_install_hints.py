"""Install hints name a command that works where they are printed (issue 22, item 1).

benchgen is not on the package index: from a checkout the hint is ``pip install -e 'CHECKOUT[extra]'``,
and on a machine without a GPU, extras that bring torch name the CPU-only torch route first.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from benchgen import install, registry

REPO = Path(__file__).resolve().parents[1]


def test_this_checkout_is_recognised():
    assert install.source() == ("checkout", str(REPO))
    assert install.pip_install("models") == f"pip install -e '{REPO}[models]'"


@pytest.mark.parametrize(("kind", "where", "expected"), [
    ("checkout", "/src/bg", "pip install -e '/src/bg[hf]'"),
    ("path", "/tmp/my copy", "pip install '/tmp/my copy[hf]'"),
    ("url", "git+https://example.org/bg.git", "pip install 'benchgen[hf] @ git+https://example.org/bg.git'"),
    ("index", "", "pip install 'benchgen[hf]'"),
])
def test_hint_matches_how_benchgen_was_installed(monkeypatch, kind, where, expected):
    monkeypatch.setattr(install, "source", lambda: (kind, where))
    assert install.pip_install("hf") == expected


def test_cpu_torch_first_only_without_torch_and_without_gpu(monkeypatch):
    monkeypatch.setattr(install, "source", lambda: ("checkout", "/src/bg"))
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    monkeypatch.setattr(install, "gpu_visible", lambda: False)
    hint = install.install_hint("models")
    assert hint.startswith(f"pip install torch --index-url {install.CPU_TORCH_INDEX} && pip install -e '/src/bg[models]'")
    assert install.install_hint("datasets") == "pip install -e '/src/bg[datasets]'"  # no torch in it
    monkeypatch.setattr(install, "gpu_visible", lambda: True)  # a GPU: the default (CUDA) build is right
    assert install.install_hint("models") == "pip install -e '/src/bg[models]'"


def test_missing_extra_line_uses_the_hint(monkeypatch):
    monkeypatch.setattr(install, "source", lambda: ("checkout", "/src/bg"))
    monkeypatch.setattr(install, "gpu_visible", lambda: True)
    err = registry.missing_extra(ModuleNotFoundError("No module named 'lm_eval'", name="lm_eval"), "lm_eval")
    assert str(err) == "lm_eval needs lm_eval, which is not installed: pip install -e '/src/bg[lmeval]'"


@pytest.mark.parametrize(("direct", "expected"), [
    ({"url": "file:///src/copy", "dir_info": {}}, ("path", "/src/copy")),
    ({"url": "file:///src/co", "dir_info": {"editable": True}}, ("checkout", "/src/co")),
    ({"url": "https://example.org/bg.git", "vcs_info": {"vcs": "git", "commit_id": "abc"}},
     ("url", "git+https://example.org/bg.git")),
    (None, ("index", "")),
])
def test_direct_url_json_as_pip_writes_it(monkeypatch, direct, expected):
    """Installed outside a checkout: PEP 610 direct_url.json says where from (absent: the index)."""

    class Dist:
        def read_text(self, name):
            assert name == "direct_url.json"
            return None if direct is None else json.dumps(direct)

    monkeypatch.setattr(install, "checkout_root", lambda: None)
    monkeypatch.setattr(install.metadata, "distribution", lambda name: Dist())
    install.source.cache_clear()
    try:
        assert install.source() == expected
    finally:
        install.source.cache_clear()
