"""The language-prior benchmark's methods and protocols (``benchmarks/language_prior.py``), kept out of the app.

The text task itself (data, run configs, the engine runs, the plain logistic-regression anchor, tables) is
:mod:`ordinalclip.app.demo_text`, shared with ``ordinalclip demo``. Here: the anchors and methods only the
benchmark runs, and its two protocols.

* Protocol A (selection on the whole validation split): every engine run keeps its best-on-val checkpoint (the
  model as built is a candidate: ``trainer.validate_at_start``); logistic regression takes C from
  :data:`LR_C_GRID` on the validation MAE.
* Protocol B (k labelled samples per rank for training *and* selection): engine runs report their last
  checkpoint (a fixed recipe, no selection); logistic regression takes C by cross-validation on the k shots per
  rank (:func:`cv_choice`); zero-shot sees no labels at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ordinalclip.app import demo_text as dt
from ordinalclip.data.lexicon import LEXICON_RANK_NAMES

# the benchmark's own methods: ids (code) and display names (tables, JSON rows, run folders)
LR_TUNED = "lr_tuned"
LR_CV = "lr_cv"
ZSLP = "zslp"
KGCOOP = "kgcoop"
PRIOR = "prior"
CLAP = "clap"
CLAP_ALM = "clap_alm"
NAMES = {
    LR_TUNED: "Logistic regression (C tuned on val)",
    LR_CV: "Logistic regression (C by CV on the shots)",
    ZSLP: "ZS-LP (rank-name prototypes)",
    KGCOOP: "OrdinalCLIP + prior penalty",
    PRIOR: "Prior head (default recipe)",
    CLAP: "Prior head + CLAP constraint",
    CLAP_ALM: "Prior head + CLAP constraint (ALM updates)",
}
# the inverse L2 strengths the tuned anchors choose from, 10^-3 .. 10^6: on AFINN the val-tuned choice lies
# inside from 2 shots on (10^3 .. 10^4 few-shot, 10^2 on the whole training split); at 1 shot it is the top,
# where the regression is as good as unregularised (10^9 gives the same val MAE to 3 decimals)
LR_C_GRID = tuple(10.0**k for k in range(-3, 7))

# short names for command lines -> method ids (the text task's and the benchmark's)
ALIASES = {
    "zero-shot": dt.ZERO_SHOT,
    "named": dt.NAMED,
    "random": dt.RANDOM,
    "coop": dt.COOP,
    "linear": dt.LINEAR_CE,
    "coral": dt.CORAL,
    "lr": dt.LOGISTIC_REGRESSION,
    "lr-tuned": LR_TUNED,
    "lr-cv": LR_CV,
    "zslp": ZSLP,
    "kgcoop": KGCOOP,
    "prior": PRIOR,
    "clap": CLAP,
    "clap-alm": CLAP_ALM,
}
# what the benchmark runs by default: the anchors, the references and the default recipe
DEFAULT_METHODS = (dt.ZERO_SHOT, LR_TUNED, LR_CV, ZSLP, dt.COOP, dt.NAMED, PRIOR, CLAP)
# rows of each protocol's table: (method, which checkpoint's metrics: "best" on val or "last")
PROTOCOL_A = (dt.ZERO_SHOT, LR_TUNED, ZSLP, dt.COOP, dt.NAMED, KGCOOP, PRIOR, CLAP, CLAP_ALM)
PROTOCOL_B = (dt.ZERO_SHOT, LR_CV, ZSLP, dt.COOP, dt.NAMED, KGCOOP, PRIOR, CLAP, CLAP_ALM)


def prior_method_overrides(full: bool) -> dict[str, dict[str, Any]]:
    """Config overrides of the benchmark's own engine methods (``full``: the whole training split).

    * ZS-LP (CLAP's anchor): a cosine head initialised from the prototypes of the C rank names (CoOp's
      prompts, as built), trained with no penalty, at the prior recipe's learning rate;
    * OrdinalCLIP + prior penalty (KgCoOp-like): the reference recipe of named base ranks with the prototype
      penalty of the prior recipe;
    * the default recipe: only towers, the C rank names and the shots are set; ``recipe: auto`` decides;
    * CLAP: the default recipe with CLAP's class-wise weights (``loss.prior_constraint: clap``, the weights
      from the zero-shot confidence on the training words, no validation split), and with their
      augmented-Lagrangian updates after every epoch (``clap_alm``).
    """
    from ordinalclip.config import PRIOR_LR, PRIOR_WEIGHT_FULL

    names = list(LEXICON_RANK_NAMES)
    context = {"context_init": dt.TEXT_CONTEXT}
    named = dt.text_method_overrides(full)[dt.NAMED]
    default = {
        "model": {"prompts": {**context, "base_rank_names": names}}
    }  # towers, names, shots: recipe auto
    return {
        ZSLP: {
            "recipe": "reference",
            "model": {"arch": "prior_head", "prompts": {**context, "learner": "plain", "rank_names": names}},
            "optim": {"lr_prototypes": PRIOR_LR},
        },
        KGCOOP: {**named, "loss": {"prior_weight": PRIOR_WEIGHT_FULL}},
        PRIOR: default,
        CLAP: {**default, "loss": {"prior_constraint": "clap"}},
        CLAP_ALM: {**default, "loss": {"prior_constraint": "clap_alm"}},
    }


def cv_choice(
    grid: Sequence[float] = LR_C_GRID, seed: int = 0, max_iter: int = 2000
) -> Callable[[np.ndarray, np.ndarray], float]:
    """A chooser of logistic regression's C that sees the training samples only: the C of ``grid`` with the
    lowest mean absolute error of the expectation over held-out folds of the training samples (stratified
    5-fold, fewer folds when a rank has fewer samples, leave-one-out at one sample per rank; a rank missing
    from a fold's training part gets probability ~0, as in :func:`ordinalclip.app.demo_text.
    logistic_regression`)."""

    def choose(x: np.ndarray, y: np.ndarray) -> float:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import LeaveOneOut, StratifiedKFold

        num_ranks = int(y.max()) + 1
        smallest = int(np.bincount(y)[np.unique(y)].min())
        splitter: Any = (
            LeaveOneOut()
            if smallest < 2
            else StratifiedKFold(n_splits=min(5, smallest), shuffle=True, random_state=seed)
        )
        folds = list(splitter.split(x, y))
        errors = {}
        for c in grid:
            total = 0.0
            for train, held in folds:
                if len(np.unique(y[train])) < 2:
                    total += float(np.abs(y[train][0] - y[held]).sum())
                    continue
                clf = LogisticRegression(C=c, max_iter=max_iter).fit(x[train], y[train])
                proba = np.full((len(held), num_ranks), 1e-12)
                proba[:, clf.classes_] += clf.predict_proba(x[held])
                proba /= proba.sum(1, keepdims=True)
                total += float(np.abs(proba @ np.arange(num_ranks) - y[held]).sum())
            errors[c] = total / len(y)
        return min(errors, key=lambda c: errors[c])

    return choose


def anchors(seed_of: Callable[[dict[str, Any]], int] | None = None) -> dict[str, Callable[..., Any]]:
    """The benchmark's scikit-learn anchors: C tuned on val (protocol A) and C by cross-validation on the shots
    (protocol B)."""

    def cv(cfg: dict[str, Any]) -> dict[str, float]:
        seed = int(cfg.get("trainer", {}).get("seed", 0)) if seed_of is None else seed_of(cfg)
        return dt.logistic_regression(cfg, choose_c=cv_choice(seed=seed))

    def tuned(cfg: dict[str, Any]) -> dict[str, float]:
        return dt.logistic_regression(cfg, c_grid=LR_C_GRID)

    for fit in (cv, tuned):  # cached results hold the grid they chose from (text task's anchor cache)
        fit.settings = {"c_grid": list(LR_C_GRID)}  # type: ignore[attr-defined]
    return {LR_TUNED: tuned, LR_CV: cv}


def protocol_results(results: Sequence[dt.TextResult], protocol: str) -> list[dt.TextResult]:
    """The rows of ``protocol`` ("A" or "B"): engine runs with their best-on-val (A) or last (B) checkpoint's
    test metrics; each protocol's own logistic-regression anchor; zero-shot in both."""
    import dataclasses

    rows = PROTOCOL_A if protocol == "A" else PROTOCOL_B
    out = []
    for r in results:
        if r.method not in rows:
            continue
        if protocol == "B" and r.last is not None:
            r = dataclasses.replace(r, metrics=r.last)
        out.append(r)
    return out


def _setting_order(setting: str) -> float:
    """ "4-shot" -> 4, "full" -> inf: settings in the order of their labels."""
    return float("inf") if setting == "full" else float(setting.split("-")[0])


def targets(
    summary_a: dict[str, dict[str, dict[str, Any]]], summary_b: dict[str, dict[str, dict[str, Any]]]
) -> dict[str, Any]:
    """The target figures for the default recipe (:data:`PRIOR`), from the two protocols' summaries
    (mean test MAE of the expectation over seeds): ``gain_vs_lr_tuned_<setting>`` (1 - MAE / MAE of the
    val-tuned regression), ``below_zeroshot_all`` (protocol A, every setting), ``protocol_b_ok`` (protocol B:
    at most min(zero-shot, regression with C by CV) at every setting), the protocol-A bar of each setting and
    the ordinality of the recipe's prototypes."""
    out: dict[str, Any] = dict(dt.gains_vs(summary_a, PRIOR, LR_TUNED, "gain_vs_lr_tuned_"))
    prior_a, prior_b = summary_a.get(PRIOR, {}), summary_b.get(PRIOR, {})

    def mae(summary: dict[str, dict[str, dict[str, Any]]], method: str, setting: str) -> float | None:
        cell = summary.get(method, {}).get(setting)
        return None if cell is None else float(cell["mae_exp"][0])

    below, b_ok, bars, ordinality = [], [], {}, {}
    for setting, cell in sorted(prior_a.items(), key=lambda kv: _setting_order(kv[0])):
        zs = mae(summary_a, dt.ZERO_SHOT, setting)
        below.append(zs is not None and cell["mae_exp"][0] < zs)
        ordinality[setting] = cell["ordinality"][0] if cell.get("ordinality") else None
        # the protocol-A target: 0.9 x tuned LR at 1 and 4 shots, min(tuned LR, zero-shot, CoOp) from 8 on
        lr = mae(summary_a, LR_TUNED, setting)
        if setting in ("1-shot", "4-shot") and lr is not None:
            bar: float | None = 0.9 * lr
        else:
            bar = min((v for v in (lr, zs, mae(summary_a, dt.COOP, setting)) if v is not None), default=None)
        bars[setting] = {
            "mae": cell["mae_exp"][0],
            "bar": bar,
            "met": bar is not None and cell["mae_exp"][0] <= bar,
        }
    for setting, cell in prior_b.items():
        anchors_b = [mae(summary_b, m, setting) for m in (dt.ZERO_SHOT, LR_CV)]
        b_ok.append(all(a is not None and cell["mae_exp"][0] <= a for a in anchors_b))
    out["below_zeroshot_all"] = bool(below) and all(below)
    out["protocol_b_ok"] = bool(b_ok) and all(b_ok)
    out["protocol_a_bars"] = bars
    out["ordinality_default_recipe"] = ordinality
    return out
