"""What the app's summary tables show (the CLI's run summary, sweep summaries, the demo table): one list."""

from __future__ import annotations

# (metrics key, column title); ``_exp`` keys use the expectation prediction, ``_max`` keys the point
# prediction (argmax; CORAL / CORN: the number of thresholds passed). Every key of ordinal_metrics is in
# metrics.json and summary.csv; these are the ones the printed tables show.
TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("mae_exp", "MAE exp"),
    ("mae_max", "MAE max"),
    ("acc_exp", "acc exp"),
    ("acc_max", "acc max"),
    ("off1_max", "off-1 acc"),
    ("qwk_max", "QWK"),
)
TABLE_METRICS: tuple[str, ...] = tuple(key for key, _ in TABLE_COLUMNS)
