"""The pipeline: the steps that join tasks, evaluators and the core into benchgen's jobs.

- ``generate``: config -> task -> writer -> validity -> manifest + card (on disk or in memory);
- ``audit``: format checks, the task's own re-derivation and validity, as structured records;
- ``baselines``: every non-reasoning baseline of a task scored through the evaluator;
- ``validity`` and ``card``: what ``generate`` records and writes beside the data.

Imports only point down: the pipeline uses tasks, evaluators and the core; the CLI and the
Python API use the pipeline.
"""
