"""The full-data reference: the task trained once on the whole training pool.

It is not an active-learning strategy: the runner gives it the whole pool as its labelled set and a
single round (registry flag ``reference``), and the leaderboard draws it as the upper bound, as the
paper does (Dice 0.789, mAP 96.56 %, accuracy 95.10 % on the real data sets).
"""

from __future__ import annotations

from albench import strategies


@strategies.register("full", task_agnostic=True, reference=True)
class FullData:
    """Upper bound: train once on the whole training pool (one round, no selection)."""
