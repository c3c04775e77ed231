"""Per-loop probes (logit lens) for k-hop composition: does the model walk the chain one hop per loop?

At every swept loop count t, the model's top-1 token at the answer position, read out through its
own readout (``lens_top1``: the reference models' norm -> head on the loop state after iteration t;
an hf model run with its loop knob at t), is compared with the query's chain: the j-th bridge entity
(j = 1..k-1, the ``bridges`` column: the entity after j hops), the answer (hop k), or neither. Per
split, depth k and t: the share of rows whose top-1 is each hop's entity, and the share matching
none. A chain that revisits an entity makes a row count for several hops (``repeated_chain_rows``).

From Python, on a reference run directory (or any adapter spec)::

    from benchgen.evaluators.probes import run_probes
    probes = run_probes("data/khop-depth-small", "reference:runs/depth-looped", loops=range(1, 17))
    probes["per_split"]["test_depth"][0]["share"]     # [loop t][hop j] shares, depth 7

``benchgen evaluate --model ... --loops ...`` on a k-hop dataset stores the same in results.json
(``metrics.probes``) and draws ``plots/probes_heatmap.png``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ENTITY = r"^<e_\d+>$"
DEFINITION = ("share of rows whose top-1 token at the answer position after loop t (the model's own readout) is "
              "the entity after hop j (j < k: bridges[j-1]; j = k: the answer), or none of the chain")
WAVEFRONT = ("share of rows whose top-1 token read out at input position j (the token r_j, which sees the head "
             "and the first j relations) after loop t is the entity after hop j (bridges[j-1]; at j = k the answer)")


def _not_available(reason: str) -> dict:
    """The probes section when it cannot be computed, with the reason."""
    return {"available": False, "reason": reason, "definition": DEFINITION}


def lens_columns(predictions) -> pa.Table | None:
    """``id``, ``loops``, ``lens_top1`` of a predictions table or file (None when it has no lens readout)."""
    if isinstance(predictions, pa.Table):
        table = predictions
    else:
        from pathlib import Path

        path = Path(predictions)
        if path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            names = pq.read_schema(path).names
            if "lens_top1" not in names:
                return None
            table = pq.read_table(path, columns=["id", "loops", "lens_top1",
                                                 *(["lens_positions"] if "lens_positions" in names else [])])
            # (an all-null lens_positions column, as adapters without it write, is dropped below)
        else:
            from benchgen.evaluators.scoring.predictions import read_predictions

            table = read_predictions(path)
    if "lens_top1" not in table.column_names or "loops" not in table.column_names:
        return None
    positions = "lens_positions" in table.column_names and table.column("lens_positions").null_count < len(table)
    return table.select(["id", "loops", "lens_top1", *(["lens_positions"] if positions else [])])


def probe_shares(dataset, lens: pa.Table | None, splits: list[str]) -> dict:
    """The probe tables (see the module doc) for ``splits`` of a k-hop ``dataset``."""
    if not splits or "bridges" not in {c["name"] for c in dataset.manifest.get("schema", [])}:
        return _not_available("needs a k-hop dataset (a 'bridges' column of intermediate entities)")
    if lens is None:
        return _not_available("not available for this model: its predictions carry no per-loop readout at the "
                              "answer position (lens_top1); reference: models always do, hf: models with a loop "
                              "knob (--loop-config / --loop-kwarg) when answers are single tokens")
    loops_all = lens.column("loops")
    if loops_all.null_count == len(loops_all) or len(pc.unique(loops_all)) < 2:
        return _not_available("needs a loop sweep (two or more loop counts)")
    loops = sorted(pc.unique(loops_all).to_pylist())
    out = {"available": True, "definition": DEFINITION, "loops": loops, "per_split": {}}
    tables = {split: dataset.table(split, columns=["id", "depth", "answer", "bridges"]) for split in splits}
    for split, rows in tables.items():
        out["per_split"][split] = _split_shares(rows, lens, loops)
    if "lens_positions" in lens.column_names:
        out["wavefront"] = {"definition": WAVEFRONT, "per_split": {
            split: _split_wavefront(rows, lens, loops, dataset.vocab.tokens) for split, rows in tables.items()}}
    else:
        out["wavefront"] = {"available": False, "reason": "the predictions carry no per-position readout "
                            "(lens_positions; reference: models emit it with a loop sweep)"}
    return out


def _chain_strings(rows: pa.Table) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Bridge entities as text (flat), the dataset row and 0-based hop of each."""
    bridges = rows.column("bridges").combine_chunks()
    n_b = np.diff(bridges.offsets.to_numpy())
    flat = pc.binary_join_element_wise("<e_", pc.cast(bridges.flatten(), pa.string()), ">", "")
    row_of = np.repeat(np.arange(len(bridges)), n_b)
    return flat, row_of, np.arange(len(row_of)) - np.repeat(np.cumsum(n_b) - n_b, n_b)


def _repeated_rows(flat: pa.Array, row_of: np.ndarray, answer: pa.Array) -> np.ndarray:
    """Per dataset row: whether its chain (bridges + answer) names some entity twice."""
    n = len(answer)
    codes = pc.dictionary_encode(pa.concat_arrays([flat, answer])).indices.to_numpy(zero_copy_only=False)
    owner = np.concatenate([row_of, np.arange(n)]).astype(np.int64)
    m = int(codes.max()) + 1 if len(codes) else 1
    distinct_owner = np.unique(owner * m + codes) // m
    return np.bincount(owner, minlength=n) > np.bincount(distinct_owner, minlength=n)


def _split_shares(rows: pa.Table, lens: pa.Table, loops: list[int]) -> list[dict]:
    """Per depth of one split: shares [t][hop] of top-1 = hop j's entity, and of none."""
    idx = pc.fill_null(pc.index_in(lens.column("id"), value_set=rows.column("id").combine_chunks()), -1)
    idx = idx.to_numpy(zero_copy_only=False).astype(np.int64)
    keep = pa.array(idx >= 0)
    idx = idx[idx >= 0]
    top = lens.column("lens_top1").filter(keep).combine_chunks()
    t_code = np.searchsorted(loops, lens.column("loops").filter(keep).to_numpy())
    flat, b_row, b_hop = _chain_strings(rows)
    answer = rows.column("answer").combine_chunks()
    repeated = _repeated_rows(flat, b_row, answer)
    depth_all = rows.column("depth").to_numpy()
    # every (lens row, bridge of its example) pair, compared in one vectorised pass
    starts = np.concatenate([[0], np.cumsum(np.bincount(b_row, minlength=len(answer)))])
    n_b = (starts[1:] - starts[:-1])[idx]
    pair_row = np.repeat(np.arange(len(idx)), n_b)
    pair_b = np.repeat(starts[:-1][idx], n_b) + (np.arange(len(pair_row)) - np.repeat(np.cumsum(n_b) - n_b, n_b))
    hit_b = pc.equal(flat.take(pa.array(pair_b)), top.take(pa.array(pair_row))).to_numpy(zero_copy_only=False)
    hit_a = pc.equal(answer.take(pa.array(idx)), top).to_numpy(zero_copy_only=False)
    any_b = np.bincount(pair_row[hit_b], minlength=len(idx)) > 0
    depth = depth_all[idx]
    L, out = len(loops), []
    for k in np.unique(depth_all):
        K, sel = int(k), depth == k
        n_rows = np.bincount(t_code[sel], minlength=L)
        grid = np.zeros((L, K))
        sb = sel[pair_row] & hit_b
        np.add.at(grid, (t_code[pair_row[sb]], b_hop[pair_b[sb]]), 1)
        grid[:, K - 1] += np.bincount(t_code[sel & hit_a], minlength=L)
        with np.errstate(invalid="ignore", divide="ignore"):
            share, none = grid / n_rows[:, None], np.bincount(t_code[sel & ~hit_a & ~any_b], minlength=L) / n_rows
        out.append({"depth": K, "n": int(n_rows.max()) if L else 0,
                    "hops": [f"hop {j}" for j in range(1, K)] + ["answer"],
                    "share": [[_num(x) for x in r] for r in share], "neither": [_num(x) for x in none],
                    "repeated_chain_rows": int(repeated[depth_all == k].sum())})
    return out


def _split_wavefront(rows: pa.Table, lens: pa.Table, loops: list[int], tokens: list[str]) -> list[dict]:
    """Per depth k of one split: shares [t][j] (j = 1..k) of rows whose readout at input position j is the
    entity after hop j, and the first loop at which each position's share reaches 0.5 (None: never)."""
    idx = pc.fill_null(pc.index_in(lens.column("id"), value_set=rows.column("id").combine_chunks()), -1)
    idx = idx.to_numpy(zero_copy_only=False).astype(np.int64)
    keep = idx >= 0
    idx = idx[keep]
    t_code = np.searchsorted(loops, lens.column("loops").filter(pa.array(keep)).to_numpy())
    readout = lens.column("lens_positions").filter(pa.array(keep)).combine_chunks()
    r_vals, r_off = readout.values.to_numpy(zero_copy_only=False), readout.offsets.to_numpy()
    # the chain as entity text per dataset row: hop j's entity at position j (bridges, then the answer)
    flat, b_row, b_hop = _chain_strings(rows)
    depth_all = rows.column("depth").to_numpy().astype(np.int64)
    ends = np.concatenate([[0], np.cumsum(depth_all)])  # chain entity slots: k per row
    chain = np.empty(int(ends[-1]), dtype=object)
    chain[ends[b_row] + b_hop] = np.asarray(flat.to_pylist(), dtype=object)
    chain[ends[1:] - 1] = np.asarray(rows.column("answer").to_pylist(), dtype=object)
    words = np.asarray(tokens, dtype=object)
    out = []
    for k in np.unique(depth_all):
        K, sel = int(k), np.flatnonzero(depth_all[idx] == k)
        if not len(sel):
            continue
        j = np.arange(1, K + 1)
        n_read = r_off[sel + 1] - r_off[sel]
        ok_len = n_read >= K + 1  # the readout covers positions 0..k (input e_h r_1 .. r_k)
        at = r_vals[np.minimum(r_off[sel][:, None] + j[None, :], len(r_vals) - 1)]
        got = np.where(ok_len[:, None], words[np.clip(at, 0, len(words) - 1)], None)
        want = chain[ends[idx[sel]][:, None] + j[None, :] - 1]
        hit = got == want
        n_t = np.bincount(t_code[sel], minlength=len(loops))
        grid = np.zeros((len(loops), K))
        np.add.at(grid, t_code[sel], hit.astype(np.float64))
        with np.errstate(invalid="ignore", divide="ignore"):
            share = grid / n_t[:, None]
        first = [next((loops[t] for t in range(len(loops)) if share[t, c] >= 0.5), None) for c in range(K)]
        out.append({"depth": K, "n": int(n_t.max()), "positions": [f"r_{c}" for c in j],
                    "share": [[_num(x) for x in r] for r in share], "first_loop_over_half": first})
    return out


def _num(x) -> float | None:
    """Plain float for JSON (NaN -> None)."""
    return None if np.isnan(x) else float(x)


def probe_metrics(dataset, predictions, splits: list[str]) -> dict:
    """``metrics.probes`` of an evaluation: the lens readout is read only for k-hop datasets."""
    if not splits or "bridges" not in {c["name"] for c in dataset.manifest.get("schema", [])}:
        return _not_available("needs a k-hop dataset (a 'bridges' column of intermediate entities)")
    return probe_shares(dataset, lens_columns(predictions), splits)


def run_probes(dataset, model: str, *, loops, splits: list[str] | None = None, batch_size: int = 256,
               limit: int | None = None, **adapter_options) -> dict:
    """Run ``model`` (e.g. ``reference:runs/looped``) over ``dataset`` at ``loops`` and return its probe tables."""
    from benchgen.dataset import Dataset, load
    from benchgen.evaluators.models.run import build_adapter, default_splits, run_model

    ds = dataset if isinstance(dataset, Dataset) else load(dataset)
    splits = list(splits) if splits else [s for s in default_splits(ds) if s.startswith("test")]
    adapter = build_adapter(model, ds, **adapter_options)
    preds = run_model(ds, adapter, splits=splits, loops=list(loops), batch_size=batch_size, limit=limit,
                      progress=False)
    return probe_shares(ds, lens_columns(preds), splits)
