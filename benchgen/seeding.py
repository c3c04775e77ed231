"""Seeds: one numpy Generator per (task, purpose..., index) from a SeedSequence.

Keys are hashed into the SeedSequence's spawn key, so neighbouring user seeds (42, 43) give
unrelated streams (no ``seed + index`` overlap) and every shard is a pure function of its key.
"""

from __future__ import annotations

import hashlib

import numpy as np


def _key_int(part: str | int) -> int:
    if isinstance(part, (int, np.integer)):
        return int(part)
    return int.from_bytes(hashlib.sha256(str(part).encode()).digest()[:8], "little")


def seed_sequence(seed: int, *keys: str | int) -> np.random.SeedSequence:
    """SeedSequence for ``seed`` under the key path ``keys`` (e.g. task, split, shard)."""
    return np.random.SeedSequence(entropy=int(seed), spawn_key=tuple(_key_int(k) for k in keys))


def rng(seed: int, *keys: str | int) -> np.random.Generator:
    """Independent PCG64 generator for ``seed`` under ``keys``."""
    return np.random.Generator(np.random.PCG64(seed_sequence(seed, *keys)))
