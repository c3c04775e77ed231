"""Grid audit helpers: plain Python over decoded rows, independent of the generator (the reference
route; ``audit_numpy.py`` runs the same checks vectorised)."""

from __future__ import annotations

from benchgen.tasks.grid.cells import Cell


def expected_cells(cfg: dict, depth_key: str, width_key: str, test_key: str,
                   interp_key: str | None = None) -> dict[str, set[Cell]]:
    """Allowed (depth, width) cells per split, recomputed from the manifest's config."""
    held = {tuple(c) for c in cfg["held_out"]}
    train = {(d, w) for d in cfg[depth_key] for w in cfg[width_key]} - held
    depth = {(d, w) for d in cfg[test_key] for w in cfg[width_key]}
    interp = {(d, w) for d in cfg.get(interp_key or "", []) for w in cfg[width_key]}
    return {"train": train, "valid": train, "test_id": train, "test_systematic": held, "test_interp": interp,
            "test_depth": depth}


def audit_grid(dataset, extra_cols: list[str], check_row, depth_key: str, width_key: str,
               test_key: str, interp_key: str | None = None) -> list[str]:
    """Run ``check_row(row) -> (problems, well_formed)`` over every row (plain Python), then check
    the split guarantees on the (depth, width) cells and queries of the well-formed rows."""
    cols = ["depth", "input_ids", "target_ids", "prompt", "answer", "width", *extra_cols]
    cells: dict[str, list[Cell]] = {}
    queries: dict[str, list[tuple]] = {}
    problems: list[str] = []
    for split in dataset.splits:
        bad: dict[str, int] = {}
        cells[split], queries[split] = [], []
        for batch in dataset.iter_batches(split, columns=cols):
            b = batch.to_pydict()
            for values in zip(*(b[c] for c in cols)):
                row = dict(zip(cols, values))
                msgs, well_formed = check_row(row)
                for msg in msgs:
                    bad[msg] = bad.get(msg, 0) + 1
                if well_formed:
                    cells[split].append((row["depth"], row["width"]))
                    queries[split].append(tuple(row["input_ids"]))
        problems += [f"split '{split}': {msg} ({n} rows)" for msg, n in bad.items()]
    return problems + audit_cells(cells, queries, dataset.config, depth_key, width_key, test_key, interp_key)


def audit_cells(cells_by_split: dict[str, list[Cell]], queries: dict[str, list[tuple]], cfg: dict,
                depth_key: str, width_key: str, test_key: str, interp_key: str | None = None) -> list[str]:
    """Split guarantees on (depth, width) cells and query overlap, from decoded rows."""
    return (cell_problems(cells_by_split, cfg, depth_key, width_key, test_key, interp_key)
            + query_problems(queries))


def cell_problems(cells_by_split: dict[str, list[Cell]], cfg: dict, depth_key: str, width_key: str,
                  test_key: str, interp_key: str | None = None) -> list[str]:
    """Split guarantees on the (depth, width) cells of each split's rows (only which cells occur matters)."""
    problems = []
    allowed = expected_cells(cfg, depth_key, width_key, test_key, interp_key)
    train_d = {d for d, _ in allowed["train"]}
    train_w = {w for _, w in allowed["train"]}
    for split, cells in cells_by_split.items():
        bad = sorted({c for c in cells if c not in allowed.get(split, set())})
        if bad:
            problems.append(f"split '{split}': rows in cells {bad} outside its allowed cells")
        if split == "test_systematic":
            for d, w in set(cells):
                if d not in train_d or w not in train_w:
                    problems.append(f"split 'test_systematic': cell {d}x{w} is not an interpolation of training")
                if (d, w) in allowed["train"]:
                    problems.append(f"split 'test_systematic': cell {d}x{w} also occurs in training")
        if split == "test_depth" and cells and min(d for d, _ in cells) <= max(train_d):
            problems.append("split 'test_depth': depths not above the largest training depth")
        if split == "test_interp":
            seen = {d for d, _ in cells_by_split.get("train", [])}
            for d in sorted({d for d, _ in cells}):
                if d in train_d or d in seen:
                    problems.append(f"split 'test_interp': depth {d} is trained")
                if not (train_d and min(train_d) < d < max(train_d)):
                    problems.append(f"split 'test_interp': depth {d} is not strictly between training depths")
    return problems


def query_problems(queries: dict[str, list[tuple]]) -> list[str]:
    """No query repeats within a split, none of another split occurs in train, valid and test_id are disjoint."""
    problems = []
    for split, qs in queries.items():
        if len(set(qs)) != len(qs):
            problems.append(f"split '{split}': {len(qs) - len(set(qs))} repeated queries")
    train_q = set(queries.get("train", []))
    for split in [s for s in queries if s != "train"]:
        overlap = train_q & set(queries[split])
        if overlap:
            problems.append(f"split '{split}': {len(overlap)} queries also occur in train")
    if set(queries.get("valid", [])) & set(queries.get("test_id", [])):
        problems.append("valid and test_id share queries")
    return problems
