"""adrank's uplift learners beside scikit-uplift's on one synthetic experiment (the ad shown
or withheld, a planted heterogeneous effect on conversion).

Glossary: *Qini*, *AUUC* adrank's areas over random (:mod:`adrank.uplift.metrics`, outcomes per
row); *sklift Qini*, *sklift AUUC* scikit-uplift's normalized scores (``qini_auc_score``,
``uplift_auc_score``) of the same predictions; *oracle* the planted ``true_uplift`` itself;
*corr* the correlation of a prediction with it.

    .venv/bin/python bench/uplift.py                  # 100,000 rows: 70% fit, 30% scored
    .venv/bin/python bench/uplift.py --rows 400000

The reference models (scikit-uplift's ``TwoModels`` and ``ClassTransformation`` over
scikit-learn's ``LogisticRegression``) read a one-hot matrix of the same hashed features
adrank's linear learner reads. Needs the ``bench`` extra (scikit-uplift, scikit-learn, scipy).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp

from adrank.data import generate_log
from adrank.features import FeaturePipeline, load_schema
from adrank.uplift import TLearner, XLearner, auuc, qini_coefficient, uplift_by_decile


def one_hot(batch, schema) -> sp.csr_matrix:
    """The batch's hashed sparse fields one-hot (a bag counts each value), then its dense
    fields standardized: the reference models' input."""
    blocks = []
    for field in schema.sparse_fields:
        f = batch.sparse[field.name]
        rows = np.repeat(np.arange(len(batch)), np.diff(f.offsets))
        width = schema.tables[field.table].num_buckets
        blocks.append(sp.csr_matrix((np.ones(len(rows)), (rows, f.values)), (len(batch), width)))
    dense = batch.dense.astype(np.float64)
    if dense.shape[1]:
        dense = (dense - dense.mean(0)) / dense.std(0).clip(1e-6)
        blocks.append(sp.csr_matrix(dense))
    return sp.hstack(blocks, format="csr")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    from sklearn.linear_model import LogisticRegression
    from sklift.metrics import qini_auc_score, uplift_auc_score
    from sklift.models import ClassTransformation, TwoModels

    log = generate_log(args.rows, seed=args.seed, treatment=True).impressions
    schema = load_schema()
    batch = FeaturePipeline(schema)(log)
    treatment = log.column("treatment").to_numpy()
    outcome = log.column("converted").to_numpy()
    truth = log.column("true_uplift").to_numpy()
    fit = np.random.default_rng(args.seed).random(len(batch)) < 0.7
    fit_rows, test_rows = np.flatnonzero(fit), np.flatnonzero(~fit)
    y, t = outcome[~fit], treatment[~fit]

    predictions: dict[str, np.ndarray] = {"oracle": truth[~fit]}
    seconds: dict[str, float] = {}
    for name, learner in (("adrank T-learner", TLearner), ("adrank X-learner", XLearner)):
        start = time.perf_counter()
        model = learner(schema, epochs=args.epochs).fit(
            batch.take(fit_rows), treatment[fit], outcome[fit]
        )
        predictions[name] = model.predict(batch.take(test_rows))
        seconds[name] = time.perf_counter() - start
    matrix = one_hot(batch, schema)
    x_fit, x_test = matrix[fit_rows], matrix[test_rows]
    references = {
        "sklift TwoModels": TwoModels(
            estimator_trmnt=LogisticRegression(C=0.1, max_iter=300),
            estimator_ctrl=LogisticRegression(C=0.1, max_iter=300),
            method="vanilla",
        ),
        "sklift ClassTransformation": ClassTransformation(
            estimator=LogisticRegression(C=0.1, max_iter=300)
        ),
    }
    for name, model in references.items():
        start = time.perf_counter()
        model.fit(x_fit, outcome[fit], treatment[fit])
        predictions[name] = np.asarray(model.predict(x_test), dtype=np.float64)
        seconds[name] = time.perf_counter() - start

    print(f"{args.rows:,} rows ({len(test_rows):,} scored), seed {args.seed}")
    print(
        f"{'model':<28}{'Qini':>10}{'AUUC':>10}{'sklift Qini':>13}{'sklift AUUC':>13}"
        f"{'corr':>7}{'fit s':>8}"
    )
    for name, score in predictions.items():
        corr = np.corrcoef(score, truth[~fit])[0, 1]
        print(
            f"{name:<28}{qini_coefficient(y, t, score):10.5f}{auuc(y, t, score):10.5f}"
            f"{qini_auc_score(y, score, t):13.4f}{uplift_auc_score(y, score, t):13.5f}"
            f"{corr:7.3f}{seconds.get(name, 0.0):8.1f}"
        )
    print("\nobserved uplift by decile of predicted uplift (highest first)")
    for name, score in predictions.items():
        deciles = uplift_by_decile(y, t, score)
        print(f"{name:<28}" + " ".join(f"{d['observed']:+.3f}" for d in deciles))


if __name__ == "__main__":
    main()
