"""Scoring: predictions (read, validate, write) joined to the dataset by id and compared.

- ``predictions``: the predictions contract (parquet / JSONL / CSV), validation, streaming reads;
- ``id_index``: exact id -> dataset row lookups in bounded memory;
- ``score``: normalisation, the join, per-row correctness and the (split, depth, loops) cells.
"""
