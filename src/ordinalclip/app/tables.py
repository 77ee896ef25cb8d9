"""What the app's summary tables show (the CLI's run summary, sweep summaries, the demo table): one list, the
headline prediction's metrics first."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# (metrics key, column title); ``_exp`` keys use the expectation prediction, ``_max`` keys the point
# prediction (argmax; CORAL / CORN: the number of thresholds passed). Every key of ordinal_metrics is in
# metrics.json and summary.csv; these are the ones the printed tables show, in the order of a run whose
# headline prediction is the expectation (the default config's); :func:`table_columns` gives any headline's.
TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("mae_exp", "MAE exp"),
    ("mae_max", "MAE max"),
    ("acc_exp", "acc exp"),
    ("acc_max", "acc max"),
    ("off1_max", "off-1 acc"),
    ("qwk_max", "QWK"),
)
TABLE_METRICS: tuple[str, ...] = tuple(key for key, _ in TABLE_COLUMNS)
SUFFIX = {"expectation": "_exp", "argmax": "_max"}  # a headline prediction -> its metrics' key suffix


def table_columns(prediction: str = "expectation") -> tuple[tuple[str, str], ...]:
    """:data:`TABLE_COLUMNS` with the MAE and accuracy of the headline ``prediction`` (``"expectation"`` or
    ``"argmax"``) before the other prediction's.

    >>> [key for key, _ in table_columns("argmax")]
    ['mae_max', 'mae_exp', 'acc_max', 'acc_exp', 'off1_max', 'qwk_max']
    """
    if prediction not in SUFFIX:
        raise ValueError(f"unknown headline prediction {prediction!r}; expected one of {list(SUFFIX)}")
    if prediction == "expectation":
        return TABLE_COLUMNS
    # each metric shown for both predictions trades places with its twin; the others stay where they are
    out = list(TABLE_COLUMNS)
    keys = [key for key, _ in TABLE_COLUMNS]
    for i, key in enumerate(keys):
        twin = key.removesuffix(SUFFIX["expectation"]) + SUFFIX["argmax"]
        if key.endswith(SUFFIX["expectation"]) and twin in keys:
            j = keys.index(twin)
            out[i], out[j] = TABLE_COLUMNS[j], TABLE_COLUMNS[i]
    return tuple(out)


def headline_metric(prediction: str) -> str:
    """The metrics key a headline ``prediction`` is judged by: ``mae_exp`` or ``mae_max``."""
    return table_columns(prediction)[0][0]


def config_prediction(config: Mapping[str, Any] | None) -> str:
    """The headline prediction of a run from its config (``config.yaml`` as a dict; None for none): its
    resolved ``trainer.prediction``, or for a config written before that key, the one its ``trainer.monitor``
    implies (:func:`ordinalclip.config.headline`: ``val_mae_max`` -> argmax)."""
    from ordinalclip.config import TrainerConfig, headline

    trainer = (config or {}).get("trainer") or {}
    prediction = trainer.get("prediction")
    monitor = trainer.get("monitor")
    return headline(
        TrainerConfig(
            prediction=prediction if prediction in SUFFIX else "auto",
            monitor=monitor if isinstance(monitor, str) and monitor else "auto",
        )
    )[0]
