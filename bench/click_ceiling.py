"""The click AUC a learner could reach on the demo world's log if it knew the truth's terms:
a logistic regression on exactly the terms ``adrank.data.synthetic`` draws clicks from,
one-hot, fitted on the same 80% training split ``adrank train`` uses (seed 0).

Glossary: *oracle* the AUC of the true probabilities (no learner can pass it: the labels' own
noise); *ceiling* this regression's held-out AUC, the oracle less what the training rows cannot
tell (mostly each creative's quality: a few hundred impressions per creative); the terms:
creative, age x category, placement x format, country x language, placement x long video,
hour, objective, the interest match and the (standardized) log watch time.

    .venv/bin/python bench/click_ceiling.py --rows 2000000          # 2 M rows: ~1 min
    .venv/bin/python bench/click_ceiling.py --rows 500000 --c 0.1 0.3

Needs the ``bench`` extra (scikit-learn, scipy).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp

from adrank.data import generate_log
from adrank.training.loop import split_holdout
from adrank.workspace import DEMO_WORLD


def codes(table, name: str) -> np.ndarray:
    """A column as dense integer codes (a dictionary's indices, else its distinct values)."""
    column = table.column(name).combine_chunks()
    if hasattr(column, "indices"):
        return column.indices.to_numpy().astype(np.int64)
    return np.unique(column.to_numpy(zero_copy_only=False), return_inverse=True)[1]


def truth_terms(table) -> sp.csr_matrix:
    """One-hot of every term of the click truth, plus the interest match and activity."""
    n = table.num_rows
    category = table.column("category").to_numpy()
    interests = table.column("interests").combine_chunks()
    offsets, values = interests.offsets.to_numpy(), interests.values.to_numpy()
    owner = np.repeat(np.arange(n), np.diff(offsets))
    interested = np.zeros(n, dtype=bool)
    interested[owner[values == category[owner]]] = True
    activity = np.log1p(table.column("watch_minutes").to_numpy())
    long_video = table.column("duration_s").to_numpy() > 30.0

    def one_hot(index: np.ndarray) -> sp.csr_matrix:
        index = np.unique(index, return_inverse=True)[1]
        return sp.csr_matrix((np.ones(n), (np.arange(n), index)), (n, index.max() + 1))

    placement = codes(table, "placement")
    return sp.hstack(
        [
            one_hot(codes(table, "creative_id")),
            one_hot(table.column("age_bucket").to_numpy() * 1000 + category),
            one_hot(placement * 100 + codes(table, "format")),
            one_hot(codes(table, "country") * 100 + codes(table, "language")),
            one_hot(placement * 2 + long_video),
            one_hot(table.column("hour").to_numpy()),
            one_hot(codes(table, "objective")),
            sp.csr_matrix(interested[:, None].astype(np.float64)),
            sp.csr_matrix(((activity - activity.mean()) / activity.std())[:, None]),
        ],
        format="csr",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--c", type=float, nargs="+", default=[0.1], help="inverse L2 strengths")
    args = parser.parse_args()

    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    table = generate_log(args.rows, seed=args.seed, config=DEMO_WORLD).impressions
    x = truth_terms(table)
    y = table.column("click").to_numpy()
    train_rows, heldout_rows = split_holdout(len(y), 0.2, args.seed)
    oracle = roc_auc_score(y[heldout_rows], table.column("p_click").to_numpy()[heldout_rows])
    print(f"{args.rows:,} rows, seed {args.seed}: oracle click AUC {oracle:.4f}")
    for c in args.c:
        start = time.perf_counter()
        model = LogisticRegression(C=c, max_iter=500).fit(x[train_rows], y[train_rows])
        auc = roc_auc_score(y[heldout_rows], model.predict_proba(x[heldout_rows])[:, 1])
        print(
            f"C {c:g}: ceiling {auc:.4f} (oracle - {oracle - auc:.4f}), "
            f"{time.perf_counter() - start:.0f} s"
        )


if __name__ == "__main__":
    main()
