"""From results.json to what people read: report.md / report.html, PNG plots, the leaderboard.

Everything here reads only :class:`~benchgen.evaluators.results.Results` (cells + metrics), so
``benchgen report RESULTS.json`` re-renders without the dataset or the predictions.
"""
