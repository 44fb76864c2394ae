"""Precision and recall of the regressions flagged at push (issue 14).

For each noise level (CV 5, 10, 15, 20 %) and injected change (+10 % .. +100 %), a
number of histories: 20 previous runs of a figure (multiplicative normal noise of
that CV around its level), then two pushed runs compared with them by
:func:`resmon.analysis.regressions.compare_value`, the server's own test: one with
the change (a positive) and one without (a negative).  A flag on a positive is a
true positive, a flag on a negative a false one.

Target: precision >= 0.95 over every flag, recall >= 0.9 over the changes of +30 %
or more.  Half the pushes carry a change here, far more than in real CI, so the
false-positive rate per unchanged push is printed too: with it, the precision at
another share of regressions can be worked out.

    .venv/bin/python bench/regressions.py
    .venv/bin/python bench/regressions.py --mad 3.5 --change 0.2 --histories 400
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resmon.analysis.regressions import (  # noqa: E402
    DEFAULT_CHANGE_THRESHOLD,
    DEFAULT_MAD_THRESHOLD,
    Thresholds,
    compare_value,
)

CVS = (0.05, 0.10, 0.15, 0.20)
CHANGES = tuple(round(0.1 * k, 1) for k in range(1, 11))
BASELINE_RUNS = 20
LEVEL = 600.0  # CPU-seconds: far above the smallest change that counts (1 s)
PRECISION_TARGET = 0.95
RECALL_TARGET = 0.90
RECALL_FROM = 0.30


def _value(rng: random.Random, cv: float, change: float = 0.0) -> float:
    return LEVEL * (1 + change) * max(0.05, rng.gauss(1.0, cv))


def run(histories: int, thresholds: Thresholds, seed: int) -> dict:
    rng = random.Random(seed)
    recall: dict[tuple[float, float], float] = {}
    false_positive: dict[float, float] = {}
    tp = fp = positives_big = tp_big = 0
    for cv in CVS:
        negatives_flagged = negatives = 0
        for change in CHANGES:
            hits = 0
            for _ in range(histories):
                previous = [_value(rng, cv) for _ in range(BASELINE_RUNS)]
                positive = compare_value(
                    "cpu_seconds", _value(rng, cv, change), previous, thresholds
                )
                negative = compare_value("cpu_seconds", _value(rng, cv), previous, thresholds)
                assert positive is not None and negative is not None
                hits += positive["regression"]
                negatives += 1
                negatives_flagged += negative["regression"]
            recall[(cv, change)] = hits / histories
            tp += hits
            if change >= RECALL_FROM - 1e-9:
                positives_big += histories
                tp_big += hits
        fp += negatives_flagged
        false_positive[cv] = negatives_flagged / negatives
    return {
        "recall": recall,
        "false_positive": false_positive,
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall_big": tp_big / positives_big,
        "tp": tp,
        "fp": fp,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mad", type=float, default=DEFAULT_MAD_THRESHOLD)
    parser.add_argument("--change", type=float, default=DEFAULT_CHANGE_THRESHOLD)
    parser.add_argument("--histories", type=int, default=200, help="per noise level and change")
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args(argv)
    thresholds = Thresholds(mad=args.mad, change=args.change)
    result = run(args.histories, thresholds, args.seed)
    print(
        f"thresholds: |x - median| > {thresholds.mad} x 1.4826 x MAD and > "
        f"{thresholds.change:.0%} of the median; {BASELINE_RUNS} previous runs; "
        f"{args.histories} histories per cell"
    )
    print("recall by injected change (rows: noise CV)")
    print("CV     " + "".join(f"{f'+{c:.0%}':>7}" for c in CHANGES) + "   false pos.")
    for cv in CVS:
        cells = "".join(f"{result['recall'][(cv, c)]:7.2f}" for c in CHANGES)
        print(f"{cv:5.0%}  {cells}   {result['false_positive'][cv]:.4f}")
    print()
    checks = [
        (
            result["precision"] >= PRECISION_TARGET,
            f"precision {result['precision']:.3f} >= {PRECISION_TARGET} "
            f"({result['tp']} true flags, {result['fp']} false)",
        ),
        (
            result["recall_big"] >= RECALL_TARGET,
            f"recall {result['recall_big']:.3f} >= {RECALL_TARGET} for changes of "
            f"+{RECALL_FROM:.0%} or more (all noise levels pooled)",
        ),
    ]
    for ok, text in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    return 0 if all(ok for ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
