"""The one predictions CSV: written by ``ordinalclip predict`` and by evaluation (a run's
``predictions/<split>_<tag>.csv``), read back by the report.

The headline prediction (the model's ``trainer.prediction``: ``expectation`` or ``argmax``) comes first, in
``value`` / ``rank`` / ``rank_name``, with ``prediction`` naming which one it is; the ``exp_*`` / ``pred_*``
columns after it keep both predictions, each column saying its unit in its name:

=============== =========================================================================================
``path``        the image as the inputs (or the split's sample list) name it
``label``       the label as written in ``predict``'s inputs (only when they have labels)
``label_rank``  the true rank index, 0..C-1 (evaluation)
``prediction``  which prediction the headline is: ``expectation`` or ``argmax``
``value``       the headline in label units: ``exp_value`` (expectation) or ``pred_value`` (argmax)
``rank``        the headline rank index: ``exp_rank`` rounded to the nearest rank (half to even, as the
                metrics round) for the expectation, ``pred_rank`` for the argmax
``rank_name``   the name of ``rank`` (when the model has rank names)
``exp_value``   expectation in label units, ``sum_i p_i v_i`` over the rank values ``v`` (e.g. ages)
``pred_value``  the label value of the predicted rank, ``v[pred_rank]``
``exp_rank``    expectation over rank indices, ``sum_i p_i i``
``pred_rank``   the predicted rank index (argmax; CORAL / CORN: the number of thresholds passed)
``p_0`` ..      the rank probabilities (when asked for, and always in evaluation)
=============== =========================================================================================

Files written before the headline columns have only the ``exp_*`` / ``pred_*`` ones; files older still used
``pred_exp`` / ``pred_max``, in ranks in a run folder and in label values in ``predict``'s output;
:func:`read_predictions_csv` reads all of them.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from ordinalclip.fileio import atomic_write

__all__ = [
    "PredictionsWriter",
    "headline_rank",
    "headline_value",
    "read_predictions_csv",
    "write_eval_predictions",
]

ORDER = (
    "path",
    "label",
    "label_rank",
    "prediction",
    "value",
    "rank",
    "rank_name",
    "exp_value",
    "pred_value",
    "exp_rank",
    "pred_rank",
)
TEXT_COLUMNS = ("path", "label", "prediction", "rank_name")


def headline_rank(prediction: str, exp_rank: Any, pred_rank: Any) -> np.ndarray:
    """The (N,) int64 headline rank indices: ``pred_rank`` for ``"argmax"``; for ``"expectation"`` the (N,)
    expected ranks rounded to the nearest rank, half to even (``np.rint``, the rounding of
    :func:`ordinalclip.metrics.accuracy`)."""
    if prediction == "argmax":
        return np.asarray(pred_rank).astype(np.int64)
    if prediction != "expectation":
        raise ValueError(f"unknown headline prediction {prediction!r}; expected 'expectation' or 'argmax'")
    return np.rint(np.asarray(exp_rank, dtype=np.float64)).astype(np.int64)


def headline_value(prediction: str, exp_value: Any, pred_value: Any) -> np.ndarray:
    """The (N,) headline values in label units: ``exp_value`` (expectation) or ``pred_value`` (argmax)."""
    if prediction not in ("expectation", "argmax"):
        raise ValueError(f"unknown headline prediction {prediction!r}; expected 'expectation' or 'argmax'")
    return np.asarray(exp_value if prediction == "expectation" else pred_value, dtype=np.float64)


def _number(x: float) -> str:
    return f"{x:.9g}"  # 9 significant digits round-trip a float32


class PredictionsWriter:
    """Writes predictions rows to an open text file, header first.

    Args:
        fh: the file (opened with ``newline=""``).
        label: write a ``label`` column (labels as the inputs give them).
        label_rank: write a ``label_rank`` column (true rank indices).
        values: write ``exp_value`` and ``pred_value`` (label units).
        num_probs: C to write ``p_0 .. p_{C-1}``, 0 for none.
        prediction: the headline prediction (``"expectation"`` or ``"argmax"``) to lead each row with
            (``prediction``, ``value``, ``rank`` and ``rank_name``, computed from the other columns); None
            for none.
        rank_names: the C rank names, for the ``rank_name`` column.
    """

    def __init__(
        self,
        fh: IO[str],
        *,
        label: bool = False,
        label_rank: bool = False,
        values: bool = True,
        num_probs: int = 0,
        prediction: str | None = None,
        rank_names: Sequence[str] | None = None,
    ):
        if prediction is not None:
            headline_rank(prediction, [], [])  # an unknown name fails before the header is written
        self.prediction = prediction
        self.rank_names = list(rank_names) if rank_names is not None else None
        present = {"path", "exp_rank", "pred_rank"}
        if prediction is not None:
            present |= {"prediction", "rank"} | ({"value"} if values else set())
            present |= {"rank_name"} if rank_names is not None else set()
        present |= {"label"} if label else set()
        present |= {"label_rank"} if label_rank else set()
        present |= {"exp_value", "pred_value"} if values else set()
        self.columns = [c for c in ORDER if c in present]
        self.num_probs = num_probs
        self._writer = csv.writer(fh, lineterminator="\n")
        # QUOTE_MINIMAL quotes only the characters of the line terminator ("\n"): a lone "\r" in a file name
        # would go out bare and split the row in two for csv and pandas; such rows are written fully quoted
        self._quoted = csv.writer(fh, lineterminator="\n", quoting=csv.QUOTE_ALL)
        self._writer.writerow(self.columns + [f"p_{k}" for k in range(num_probs)])

    def write(self, path: str, probs: Sequence[float] | None = None, **fields: Any) -> None:
        """One row: ``path``, the columns given at construction (as keywords; the headline ones are computed)
        and the (C,) ``probs``."""
        if self.prediction is not None:
            rank = int(headline_rank(self.prediction, [fields["exp_rank"]], [fields["pred_rank"]])[0])
            fields["prediction"], fields["rank"] = self.prediction, rank
            if "value" in self.columns:
                fields["value"] = headline_value(
                    self.prediction, [fields["exp_value"]], [fields["pred_value"]]
                )[0]
            if self.rank_names is not None:
                fields["rank_name"] = self.rank_names[rank]
        row: list[Any] = []
        for column in self.columns:
            value = path if column == "path" else fields[column]
            if column in ("value", "exp_value", "pred_value", "exp_rank"):
                value = _number(float(value))
            elif column in ("rank", "pred_rank", "label_rank"):
                value = int(value)
            elif value is None:
                value = ""
            row.append(value)
        if self.num_probs:
            if probs is None or len(probs) != self.num_probs:
                raise ValueError(f"{path}: expected {self.num_probs} probabilities")
            row += [_number(float(p)) for p in probs]
        bare_cr = any(isinstance(v, str) and "\r" in v for v in row)
        (self._quoted if bare_cr else self._writer).writerow(row)


def read_predictions_csv(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """A predictions CSV as arrays under the column names above (``path``, ``label``, ``prediction`` and
    ``rank_name`` as strings,
    ``probs`` (N, C) from the ``p_k`` columns); the old ``pred_exp`` / ``pred_max`` columns are read in the
    unit their writer used (ranks in a run folder, label values next to a ``pred_rank`` column)."""
    with Path(path).open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path}: no predictions")
    header = list(rows[0])
    rename: dict[str, str] = {}
    if "pred_exp" in header:
        if "pred_rank" in header:  # ordinalclip predict's old layout: label values
            rename = {"pred_exp": "exp_value", "pred_max": "pred_value"}
        else:  # a run folder's old layout: ranks, and label = the true rank
            rename = {"pred_exp": "exp_rank", "pred_max": "pred_rank", "label": "label_rank"}
    out: dict[str, np.ndarray] = {}
    for column in header:
        key = rename.get(column, column)
        if column.startswith("p_") and column[2:].isdigit():
            continue
        if key in TEXT_COLUMNS:
            out[key] = np.array([r[column] for r in rows], dtype=object)
        else:
            try:
                out[key] = np.array([float(r[column]) for r in rows])
            except ValueError as err:
                raise ValueError(f"{path}: column {column!r}: {err}") from None
    prob_cols = sorted(
        (k for k in header if k.startswith("p_") and k[2:].isdigit()), key=lambda k: int(k[2:])
    )
    if prob_cols:
        out["probs"] = np.array([[float(r[k]) for k in prob_cols] for r in rows])
    return out


def write_eval_predictions(
    path: str | os.PathLike[str],
    predictions: Mapping[str, Any],
    samples: Sequence[Any],
    ranks: Any = None,
    prediction: str | None = None,
) -> Path:
    """An evaluation's per-example predictions (a run's ``predictions/<split>_<tag>.csv``), atomically.

    Args:
        predictions: arrays (numpy or torch) of the evaluation: ``index`` (N,) into ``samples``, ``label``
            (N,) true ranks, ``pred_exp`` (N,) expected rank, ``pred_max`` (N,) predicted rank, optional
            ``probs`` (N, C).
        samples: the split's samples (their ``path`` names the rows).
        ranks: the run's :class:`~ordinalclip.data.samples.RankSpace`; with it (and ``probs``) the rows also
            get ``exp_value`` and ``pred_value`` in label units (and ``rank_name`` when it has names).
        prediction: the run's headline prediction (``trainer.prediction``): the rows lead with it.
    """
    probs = predictions.get("probs")
    probs_list = probs.tolist() if probs is not None else None
    num_probs = len(probs_list[0]) if probs_list else 0
    values = np.asarray(ranks.values().tolist(), np.float64) if ranks is not None and probs_list else None
    index = predictions["index"].tolist()
    columns = zip(
        predictions["label"].tolist(), predictions["pred_exp"].tolist(), predictions["pred_max"].tolist()
    )

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            writer = PredictionsWriter(
                fh,
                label_rank=True,
                values=values is not None,
                num_probs=num_probs,
                prediction=prediction,
                rank_names=getattr(ranks, "names", None),
            )
            for row, (i, (label, exp, top)) in enumerate(zip(index, columns)):
                p = probs_list[row] if probs_list else None
                extra = {}
                if values is not None:
                    extra = {
                        "exp_value": float(np.asarray(p) @ values),
                        "pred_value": float(values[int(top)]),
                    }
                name = samples[i].path if i < len(samples) else str(i)
                writer.write(name, p, label_rank=label, exp_rank=exp, pred_rank=top, **extra)

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(out, write)
