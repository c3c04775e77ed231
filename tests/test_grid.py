"""The shared (depth, width) grid: cell sets, the interpolation check, unique sampling, hashing."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchgen.errors import ConfigError
from benchgen.schema import make_ids, string_array
from benchgen.tasks.grid import cells as grid
from benchgen.tasks.grid.cells import Grid, UniqueCell, plan_rows, row_hash


def test_cells_of_each_family():
    g = Grid((2, 4, 8), (3, 4), ((4, 4),), (16, 32))
    g.validate()
    assert g.train_cells() == [(2, 3), (2, 4), (4, 3), (8, 3), (8, 4)]
    assert g.systematic_cells() == [(4, 4)]
    assert g.depth_cells() == [(16, 3), (16, 4), (32, 3), (32, 4)]
    assert g.interp_cells() == []
    g = Grid((2, 4, 8, 16, 32), (3,), (), (), interp_depths=(24,))  # Saunshi et al.: n=24 never trained
    g.validate()
    assert g.interp_cells() == [(24, 3)] and g.depth_cells() == []


@pytest.mark.parametrize("kwargs,option,words", [
    ({"held_out": ((5, 3),)}, "held-out", "depth 5 is not a training depth"),
    ({"held_out": ((2, 9),)}, "held-out", "width 9 is not a training width"),
    ({"widths": (3,), "held_out": ((4, 3),)}, "held-out", "depth 4 occurs in no training cell"),
    ({"depths": (2,), "held_out": ((2, 3),)}, "held-out", "width 3 occurs in no training cell"),
    ({"depths": (2,), "widths": (3,), "held_out": ((2, 3),)}, "held-out", "no training cells remain"),
    ({"test_depths": (4, 5)}, "test-depths", "above the largest training depth 4"),
    ({"depths": ()}, "train-depths", "at least one"),
    ({"widths": ()}, "train-widths", "at least one"),
    ({"interp_depths": (4,)}, "interp-depths", "depth 4 is a training depth"),
    ({"interp_depths": (3, 5)}, "interp-depths", "depth 5 is not strictly between the smallest and largest training depths 2 and 4"),
    ({"interp_depths": (1,)}, "interp-depths", "depth 1 is not strictly between"),
    ({"depths": (2,), "held_out": (), "interp_depths": (3,)}, "interp-depths", "depth 3 is not strictly between"),
])
def test_bad_grids_name_the_option(kwargs, option, words):
    base = {"depths": (2, 4), "widths": (3, 4), "held_out": ((4, 4),), "test_depths": (6,)}
    g = Grid(**{**base, **kwargs})
    with pytest.raises(ConfigError) as e:
        g.validate()
    assert f"option '{option}'" in str(e.value) and words in str(e.value)


@settings(max_examples=60, deadline=None)
@given(depths=st.sets(st.integers(1, 8), max_size=4), widths=st.sets(st.integers(1, 5), max_size=3),
       held=st.sets(st.tuples(st.integers(1, 8), st.integers(1, 5)), max_size=4),
       tests=st.sets(st.integers(1, 12), max_size=3), interp=st.sets(st.integers(1, 9), max_size=2))
def test_valid_grids_keep_every_promise(depths, widths, held, tests, interp):
    g = Grid(tuple(sorted(depths)), tuple(sorted(widths)), tuple(sorted(held)), tuple(sorted(tests)),
             interp_depths=tuple(sorted(interp)))
    try:
        g.validate()
    except ConfigError:
        return
    train = set(g.train_cells())
    assert train and not train & set(g.systematic_cells())
    for d, w in g.systematic_cells():  # interpolation: each piece seen in training, never together
        assert any(td == d for td, _ in train) and any(tw == w for _, tw in train)
    assert {d for d, _ in train} == depths and {w for _, w in train} == widths
    assert all(d > max(depths) for d, _ in g.depth_cells())
    for d, w in g.interp_cells():  # strictly inside the trained range, never trained, every width
        assert min(depths) < d < max(depths) and d not in depths and w in widths
    assert len(g.interp_cells()) == len(interp) * len(widths)


def test_row_hash_equal_rows_equal_distinct_rows_distinct():
    rng = np.random.default_rng(0)
    for width in (1, 7, 8, 9, 300):
        a = rng.integers(0, 4, size=(5000, width), dtype=np.int8)
        h = row_hash(a)
        _, first = np.unique(a, axis=0, return_index=True)
        assert len(np.unique(h)) == len(first)  # exactly the distinct rows
        assert np.array_equal(row_hash(a[::-1].copy()), h[::-1])
    # rows differing in a single high byte of a word, or in two words, still differ
    b = np.zeros((4, 16), np.int8)
    b[1, 7], b[2, 15], b[3, [7, 15]] = 1, 1, 1
    assert len(set(row_hash(b).tolist())) == 4


class Toy:
    """A cell of ``width`` binary digits: population 2**width."""

    def population(self, cell):
        return 2 ** cell[1]

    def draw(self, rng, cell, m):
        return {"key": rng.integers(0, 2, size=(m, cell[1]), dtype=np.int8)}

    def table(self, rows, cell, split):
        return pa.table({"x": pa.array(rows["key"].sum(axis=1))})


def test_unique_cell_exhausts_a_population_then_refuses():
    u = UniqueCell(Toy(), (1, 6), "train_per_cell")
    rng = np.random.default_rng(1)
    a = u.take(rng, 40)["key"]
    b = u.take(rng, 24)["key"]
    both = np.concatenate([a, b])
    assert len(np.unique(both, axis=0)) == 64  # every one of the 2**6 rows exactly once
    with pytest.raises(ConfigError, match="train-per-cell.*found only 64 distinct rows"):
        grid.MAX_ROUNDS, saved = 5, grid.MAX_ROUNDS
        try:
            u.take(rng, 1)
        finally:
            grid.MAX_ROUNDS = saved


def test_check_population_refuses_before_work():
    with pytest.raises(ConfigError, match="cell 1x3 has only 8 distinct rows, asked 9"):
        grid.check_population(Toy(), [(1, 5), (1, 3)], 9, "train_per_cell", "train")


def test_plan_rows_and_string_array():
    for total, parts in ((0, 3), (10, 3), (65537, 2)):
        p = plan_rows(total, parts)
        assert sum(p) == total and len(p) == parts and max(p) - min(p) <= 1
    chars = np.frombuffer(b"abcdefgh", np.uint8).reshape(2, 4)
    assert string_array(chars).to_pylist() == ["abcd", "efgh"]
    assert string_array(chars, np.array([1, 3])).to_pylist() == ["a", "efg"]


def test_make_ids_format_and_wide_counters():
    assert make_ids("t", "s", 8, 3).to_pylist() == ["t/s/000000008", "t/s/000000009", "t/s/000000010"]
    assert make_ids("t", "s", 999_999_999, 2).to_pylist() == ["t/s/0999999999", "t/s/1000000000"]
