"""Retrieval and matching metrics of the paper (section V.B, Tables II-V), in plain numpy.

Everything takes a score matrix ``scores`` of shape (queries, gallery), higher = more relevant.
Rankings sort each row by descending score; ties keep gallery order (a stable sort), so results
are deterministic. Every value is a fraction in [0, 1] (the paper prints percent).

Class-level relevance (Tables III-V): a gallery item is relevant to a query when their class
labels are equal.

* ``map``: mean over queries of AP over the full ranking, ``sum_r P(r) rel(r) / n_relevant``.
* ``map@L`` (equation 8 with L = 150): ``sum_{r<=L} P(r) rel(r) / N_L`` with N_L the number of
  relevant items among the top L (0 when there is none), the usual reading of equation 8 in the
  hashing literature the paper follows.
* ``p@K`` / ``r@K``: relevant items in the top K over K (over min(K, gallery size) for a tiny
  gallery) / over all relevant items, averaged over queries.
* ``f@K``: equation 9 on the averaged P@K and R@K, ``2 P R / (P + R)``. This reproduces the paper's
  tables (e.g. Table IV, CNN+M, A->I: P@1 32.37, R@1 1.73 -> F@1 3.28).
* precision-recall curve: mean precision and mean recall at every cutoff K = 1 .. gallery size.

Queries with no relevant gallery item are left out of every class-level mean (their count is
reported as ``skipped_queries``).

Pair-level relevance: only the query's own counterpart(s) count (a caption's own image; an image's
own captions). ``R@K`` is the fraction of queries with at least one own counterpart in the top K;
``mR`` is the mean of R@1/5/10 of both directions.

Matching accuracy (Table II): accuracy of the k = 2 classifier on balanced matching and
non-matching pairs, a pair predicted "matching" when its probability is >= the threshold (0.5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Cutoffs of P@K, R@K and F@K in the paper.
DEFAULT_KS = (1, 5, 10)
#: L of the truncated MAP of equation 8.
DEFAULT_MAP_AT = 150


def rank(scores: np.ndarray) -> np.ndarray:
    """Gallery indices of each query, best first (stable: ties keep gallery order). (Q, N) int."""
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a (queries, gallery) matrix, got shape {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or Inf; the model produced invalid outputs")
    return np.argsort(-scores, axis=1, kind="stable")


def label_relevance(query_labels: Sequence[str] | np.ndarray, gallery_labels: Sequence[str] | np.ndarray) -> np.ndarray:
    """(Q, N) bool: query and gallery item share a class label."""
    return np.asarray(query_labels)[:, None] == np.asarray(gallery_labels)[None, :]


def _sorted_relevance(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    relevant = np.asarray(relevant, dtype=bool)
    if relevant.shape != np.shape(scores):
        raise ValueError(f"relevance shape {relevant.shape} differs from scores shape {np.shape(scores)}")
    return np.take_along_axis(relevant, rank(scores), axis=1)


def average_precision(sorted_relevant: np.ndarray, top: int | None = None) -> np.ndarray:
    """AP of each query from its relevance in ranked order.

    Args:
        sorted_relevant: (Q, N) bool, relevance of the ranked gallery items.
        top: L of equation 8 (normalised by the relevant items within the top L); None = the full
            ranking (normalised by all relevant items).

    Returns:
        (Q,) float64; 0 for a query with nothing relevant (in the top L).
    """
    sorted_relevant = np.asarray(sorted_relevant, dtype=bool)
    cut = sorted_relevant if top is None else sorted_relevant[:, :top]
    hits = np.cumsum(cut, axis=1)
    positions = np.arange(1, cut.shape[1] + 1)
    precision_sum = (hits / positions * cut).sum(axis=1)
    count = (sorted_relevant.sum(axis=1) if top is None else cut.sum(axis=1)).astype(np.float64)
    return np.divide(precision_sum, count, out=np.zeros_like(precision_sum), where=count > 0)


def retrieval_metrics(scores: np.ndarray, relevant: np.ndarray, ks: Sequence[int] = DEFAULT_KS,
                      map_at: int = DEFAULT_MAP_AT, curve: bool = True) -> dict[str, object]:
    """Class-level metrics of a score matrix against a relevance matrix.

    Args:
        scores: (Q, N) scores.
        relevant: (Q, N) bool relevance (e.g. :func:`label_relevance`).
        ks: cutoffs of P@K, R@K, F@K.
        map_at: L of the truncated MAP.
        curve: whether to include the precision-recall curve.

    Returns:
        ``{"map", "map@L", "p@K", "r@K", "f@K", "queries", "skipped_queries", "gallery",
        "pr_curve": {"recall": [...], "precision": [...]}}``.

    Raises:
        ValueError: no query has a relevant gallery item, or shapes disagree.
    """
    sorted_relevant = _sorted_relevance(scores, relevant)
    n_relevant = sorted_relevant.sum(axis=1)
    keep = n_relevant > 0
    if not keep.any():
        raise ValueError("no query has a relevant gallery item; check the labels of the split")
    sorted_relevant = sorted_relevant[keep]
    n_relevant = n_relevant[keep].astype(np.float64)
    gallery = sorted_relevant.shape[1]
    hits = np.cumsum(sorted_relevant, axis=1)
    report: dict[str, object] = {
        "map": float(average_precision(sorted_relevant).mean()),
        f"map@{map_at}": float(average_precision(sorted_relevant, top=map_at).mean()),
    }
    precisions: dict[int, float] = {}
    recalls: dict[int, float] = {}
    for k in ks:
        cutoff = min(k, gallery)
        precisions[k] = float((hits[:, cutoff - 1] / cutoff).mean())
        recalls[k] = float((hits[:, cutoff - 1] / n_relevant).mean())
    for k in ks:
        report[f"p@{k}"] = precisions[k]
    for k in ks:
        report[f"r@{k}"] = recalls[k]
    for k in ks:
        report[f"f@{k}"] = f_score(precisions[k], recalls[k])
    report["queries"] = int(keep.sum())
    report["skipped_queries"] = int((~keep).sum())
    report["gallery"] = int(gallery)
    if curve:
        recall_curve, precision_curve = precision_recall_curve(sorted_relevant)
        report["pr_curve"] = {"recall": recall_curve.tolist(), "precision": precision_curve.tolist()}
    return report


def f_score(precision: float, recall: float) -> float:
    """Equation 9, 0 when both are 0."""
    total = precision + recall
    return 0.0 if total == 0 else 2.0 * precision * recall / total


def precision_recall_curve(sorted_relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean recall and mean precision at every cutoff 1 .. N of ranked relevance (Q, N).

    Queries without any relevant item must be removed first (their recall is undefined).
    """
    sorted_relevant = np.asarray(sorted_relevant, dtype=bool)
    hits = np.cumsum(sorted_relevant, axis=1)
    totals = sorted_relevant.sum(axis=1, keepdims=True).astype(np.float64)
    if (totals == 0).any():
        raise ValueError("every query needs at least one relevant item for a precision-recall curve")
    positions = np.arange(1, sorted_relevant.shape[1] + 1)
    return (hits / totals).mean(axis=0), (hits / positions).mean(axis=0)


def pair_recall(scores: np.ndarray, own: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Pair-level R@K: fraction of queries with one of their own counterparts in the top K.

    Args:
        scores: (Q, N) scores.
        own: (Q, N) bool, True where the gallery item is the query's own counterpart.
        ks: cutoffs.
    """
    sorted_own = _sorted_relevance(scores, own)
    if not sorted_own.any(axis=1).all():
        raise ValueError("every query needs its own counterpart in the gallery for pair-level recall")
    first = np.argmax(sorted_own, axis=1)  # 0-based rank of the best-ranked own counterpart
    return {f"r@{k}": float((first < k).mean()) for k in ks}


def matching_accuracy(positive: np.ndarray, negative: np.ndarray, threshold: float = 0.5) -> float:
    """Table II: accuracy on matching pairs (``positive`` probabilities) and non-matching ones.

    A pair is predicted matching when its probability is >= ``threshold``. Pass as many negatives
    as positives for the paper's balanced setting.
    """
    positive = np.asarray(positive, dtype=np.float64).ravel()
    negative = np.asarray(negative, dtype=np.float64).ravel()
    total = positive.size + negative.size
    if total == 0:
        raise ValueError("no pairs to score")
    correct = int((positive >= threshold).sum()) + int((negative < threshold).sum())
    return correct / total


def cross_modal_report(scores: np.ndarray, audio_labels: Sequence[str] | np.ndarray,
                       image_labels: Sequence[str] | np.ndarray, audio_image: Sequence[int] | np.ndarray,
                       ks: Sequence[int] = DEFAULT_KS, map_at: int = DEFAULT_MAP_AT,
                       curve: bool = True) -> dict[str, object]:
    """Both retrieval directions of one split from its (audio, image) score matrix.

    Args:
        scores: (A, I) match score of every spoken caption against every image of the split.
        audio_labels: class of each caption (A,).
        image_labels: class of each image (I,).
        audio_image: index of each caption's own image (A,).
        ks: cutoffs.
        map_at: L of the truncated MAP.
        curve: whether to include precision-recall curves.

    Returns:
        ``{"audio_to_image": {...}, "image_to_audio": {...}, "pairs": {"audio_to_image": {r@K},
        "image_to_audio": {r@K}, "mR": ...}}``; A->I queries are the captions, I->A the images.
    """
    scores = np.asarray(scores)
    audio_image = np.asarray(audio_image)
    relevant = label_relevance(audio_labels, image_labels)
    own = np.zeros(scores.shape, dtype=bool)
    own[np.arange(scores.shape[0]), audio_image] = True
    a2i_pairs = pair_recall(scores, own, ks)
    i2a_pairs = pair_recall(scores.T, own.T, ks)
    mean_recall = float(np.mean(list(a2i_pairs.values()) + list(i2a_pairs.values())))
    return {
        "audio_to_image": retrieval_metrics(scores, relevant, ks, map_at, curve),
        "image_to_audio": retrieval_metrics(scores.T, relevant.T, ks, map_at, curve),
        "pairs": {"audio_to_image": a2i_pairs, "image_to_audio": i2a_pairs, "mR": mean_recall},
    }
