"""Task generators, one folder per task (config, generator, audit, baselines; ``TASK`` in its
``__init__``), the (depth, width) grid engine they share, and the common baselines."""
