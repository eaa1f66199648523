"""The paper's published learning curves, drawn faintly behind albench's own on the real tasks.

Source: Khanal et al., "M-VAAL: Multimodal Variational Adversarial Active Learning for Downstream
Medical Image Analysis Tasks", MIUA 2023 (Figs. 3, 5, 6), as the per-round means printed in the
authors' notebook and transcribed in the project's METHOD.md ("The authors' per-round results").
Full-data upper bounds: paper Sec. 4 (Dice 0.789, mAP 96.56 %, accuracy 95.10 %).

Caveat carried into the plots' legend: the authors' sampler mapped scores to the wrong items
(METHOD.md, "Known defects"), so their VAAL / M-VAAL curves need not reflect the methods as
described; they are a reference for scale, not a target.
"""

from __future__ import annotations

from dataclasses import dataclass

CITATION = "Khanal et al., MIUA 2023 (authors' notebook, via METHOD.md)"
CITATION_SHORT = "Khanal et al., MIUA 2023"


@dataclass(frozen=True)
class PublishedCurves:
    """Published mean per labelled size for each strategy, and the full-data bound."""

    metric: str  # the albench primary metric these numbers correspond to
    n_labelled: tuple[int, ...]
    means: dict[str, tuple[float, ...]]
    full: float


PUBLISHED: dict[str, PublishedCurves] = {
    "brats-wt": PublishedCurves(
        metric="test_dice",
        n_labelled=(200, 300, 400, 500, 600, 700, 800),
        means={
            "mvaal": (0.611, 0.725, 0.745, 0.751, 0.757, 0.756, 0.763),
            "vaal": (0.611, 0.702, 0.747, 0.739, 0.728, 0.743, 0.764),
            "random": (0.611, 0.690, 0.720, 0.738, 0.743, 0.738, 0.763),
        },
        full=0.789,
    ),
    "brats-ml": PublishedCurves(
        metric="test_map",
        n_labelled=(200, 300, 400, 500, 600, 700, 800, 900),
        means={
            "mvaal": (0.931, 0.956, 0.959, 0.962, 0.967, 0.964, 0.966, 0.968),
            "vaal": (0.931, 0.948, 0.951, 0.958, 0.959, 0.961, 0.961, 0.964),
            "random": (0.931, 0.948, 0.951, 0.954, 0.961, 0.962, 0.962, 0.965),
        },
        full=0.9656,
    ),
    "covidqu": PublishedCurves(
        metric="test_accuracy",
        n_labelled=(100, 200, 300, 400, 500, 600, 700, 800),
        means={
            "mvaal": (0.722, 0.881, 0.902, 0.911, 0.923, 0.928, 0.932, 0.935),
            "vaal": (0.722, 0.876, 0.899, 0.909, 0.918, 0.924, 0.934, 0.933),
            "random": (0.722, 0.882, 0.899, 0.905, 0.916, 0.919, 0.925, 0.931),
        },
        full=0.9510,
    ),
}


def published_for(task: str, primary_metric: str) -> PublishedCurves | None:
    """The paper's curves for a real task, when its metric is the one albench recorded."""
    ref = PUBLISHED.get(task)
    if ref is None or ref.metric != primary_metric:
        return None
    return ref
