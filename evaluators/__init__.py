"""Evaluators: predictions -> cells (split, depth, loops) -> metrics -> results.json -> report."""
