"""The (depth, width) grid engine the addition and induction tasks share.

- ``cells``: the grid of cells, the sampler protocol a task implements, unique-row drawing;
- ``stream``: every split written through the writer the task is handed;
- ``parallel``: the train split on worker processes (byte-identical to the stream);
- ``audit``: split guarantees on (depth, width) cells, recomputed from decoded rows.
"""
