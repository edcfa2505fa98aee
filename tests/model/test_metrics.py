"""Retrieval metrics against a naive loop-based reference and hand-computed tiny cases."""

from __future__ import annotations

import numpy as np
import pytest

from dvan.eval.metrics import (
    average_precision,
    cross_modal_report,
    f_score,
    label_relevance,
    matching_accuracy,
    pair_recall,
    precision_recall_curve,
    rank,
    retrieval_metrics,
)


def naive_ranking(row: list[float]) -> list[int]:
    """Indices by descending score, ties by index, the slow obvious way."""
    return sorted(range(len(row)), key=lambda i: (-row[i], i))


def naive_class_metrics(scores: np.ndarray, qlabels: list[str], glabels: list[str], ks: tuple[int, ...],
                        top: int) -> dict[str, float]:
    aps, aps_top = [], []
    precision = {k: [] for k in ks}
    recall = {k: [] for k in ks}
    for q in range(scores.shape[0]):
        order = naive_ranking(list(scores[q]))
        relevant = [glabels[i] == qlabels[q] for i in order]
        total = sum(relevant)
        if total == 0:
            continue
        found, ap = 0, 0.0
        found_top, ap_top = 0, 0.0
        for r, is_relevant in enumerate(relevant, start=1):
            if is_relevant:
                found += 1
                ap += found / r
                if r <= top:
                    found_top += 1
                    ap_top += found / r
        aps.append(ap / total)
        aps_top.append(ap_top / found_top if found_top else 0.0)
        for k in ks:
            kk = min(k, len(order))
            hits = sum(relevant[:kk])
            precision[k].append(hits / kk)
            recall[k].append(hits / total)
    out = {"map": float(np.mean(aps)), f"map@{top}": float(np.mean(aps_top))}
    for k in ks:
        p, r = float(np.mean(precision[k])), float(np.mean(recall[k]))
        out[f"p@{k}"], out[f"r@{k}"] = p, r
        out[f"f@{k}"] = 2 * p * r / (p + r) if p + r else 0.0
    return out


def naive_pair_recall(scores: np.ndarray, own: list[set[int]], ks: tuple[int, ...]) -> dict[str, float]:
    out = {}
    for k in ks:
        hits = 0
        for q in range(scores.shape[0]):
            if set(naive_ranking(list(scores[q]))[:k]) & own[q]:
                hits += 1
        out[f"r@{k}"] = hits / scores.shape[0]
    return out


@pytest.mark.parametrize("seed", range(6))
def test_class_metrics_match_naive_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_queries, n_gallery, n_classes = rng.integers(5, 40), rng.integers(3, 60), rng.integers(2, 6)
    classes = [f"c{i}" for i in range(n_classes)]
    qlabels = [classes[i] for i in rng.integers(0, n_classes, n_queries)]
    glabels = [classes[i] for i in rng.integers(0, n_classes, n_gallery)]
    scores = rng.normal(size=(n_queries, n_gallery))
    if seed % 2:  # coarse scores: many ties, broken by gallery order in both implementations
        scores = np.round(scores)
    top = int(rng.integers(1, n_gallery + 5))
    ks = (1, 5, 10)
    expected = naive_class_metrics(scores, qlabels, glabels, ks, top)
    got = retrieval_metrics(scores, label_relevance(qlabels, glabels), ks, map_at=top)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    assert got["queries"] + got["skipped_queries"] == n_queries


@pytest.mark.parametrize("seed", range(4))
def test_pair_recall_matches_naive_reference(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n_images, per_image = int(rng.integers(3, 25)), int(rng.integers(1, 6))
    audio_image = np.repeat(np.arange(n_images), per_image)
    labels = [f"c{i % 3}" for i in range(n_images)]
    scores = rng.normal(size=(audio_image.size, n_images))
    report = cross_modal_report(scores, [labels[i] for i in audio_image], labels, audio_image)
    ks = (1, 5, 10)
    a2i = naive_pair_recall(scores, [{int(i)} for i in audio_image], ks)
    i2a = naive_pair_recall(scores.T, [set(np.flatnonzero(audio_image == i).tolist()) for i in range(n_images)], ks)
    pairs = report["pairs"]
    assert isinstance(pairs, dict)
    assert pairs["audio_to_image"] == pytest.approx(a2i)
    assert pairs["image_to_audio"] == pytest.approx(i2a)
    assert pairs["mR"] == pytest.approx(np.mean(list(a2i.values()) + list(i2a.values())))


def test_hand_computed_ranking() -> None:
    # gallery classes a b a b c ; query class a ; ranking by score: g1(b) g0(a) g3(b) g2(a) g4(c)
    scores = np.array([[0.8, 0.9, 0.3, 0.5, 0.1]])
    report = retrieval_metrics(scores, label_relevance(["a"], list("abab" "c")), ks=(1, 2, 4), map_at=3)
    # relevant at ranks 2 and 4: AP = (1/2 + 2/4) / 2 = 0.5
    assert report["map"] == pytest.approx(0.5)
    # top 3 holds one relevant item (rank 2): AP@3 = (1/2) / 1
    assert report["map@3"] == pytest.approx(0.5)
    assert report["p@1"] == 0.0 and report["r@1"] == 0.0 and report["f@1"] == 0.0
    assert report["p@2"] == pytest.approx(0.5) and report["r@2"] == pytest.approx(0.5)
    assert report["p@4"] == pytest.approx(0.5) and report["r@4"] == pytest.approx(1.0)
    assert report["f@4"] == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    curve = report["pr_curve"]
    assert isinstance(curve, dict)
    assert curve["recall"] == pytest.approx([0, 0.5, 0.5, 1, 1])
    assert curve["precision"] == pytest.approx([0, 0.5, 1 / 3, 0.5, 0.4])


def test_perfect_and_reversed_rankings() -> None:
    labels = ["a", "a", "b", "b"]
    relevant = label_relevance(labels, labels)
    perfect = relevant.astype(float)
    assert retrieval_metrics(perfect, relevant)["map"] == 1.0
    reversed_scores = 1.0 - perfect
    # each query: relevant at ranks 3 and 4 -> AP = (1/3 + 2/4) / 2
    assert retrieval_metrics(reversed_scores, relevant)["map"] == pytest.approx((1 / 3 + 0.5) / 2)


def test_map_truncated_without_hits_is_zero() -> None:
    ranked = np.array([[False, False, True]])
    assert average_precision(ranked, top=2)[0] == 0.0
    assert average_precision(ranked)[0] == pytest.approx(1 / 3)


def test_queries_without_relevant_items_are_skipped() -> None:
    scores = np.array([[1.0, 0.0], [0.5, 0.2]])
    report = retrieval_metrics(scores, label_relevance(["a", "z"], ["a", "b"]))
    assert report["queries"] == 1 and report["skipped_queries"] == 1 and report["map"] == 1.0
    with pytest.raises(ValueError, match="no query"):
        retrieval_metrics(scores, label_relevance(["y", "z"], ["a", "b"]))


def test_paper_f_score_is_from_mean_precision_and_recall() -> None:
    # Table IV, CNN+M, A->I
    assert 100 * f_score(0.3237, 0.0173) == pytest.approx(3.28, abs=0.01)
    assert 100 * f_score(0.3391, 0.0900) == pytest.approx(14.23, abs=0.01)
    assert f_score(0.0, 0.0) == 0.0


def test_pair_recall_by_hand() -> None:
    scores = np.array([[0.1, 0.9, 0.5], [0.7, 0.2, 0.3]])
    own = np.array([[True, False, False], [True, False, False]])
    # query 0's own item is ranked 3rd, query 1's 1st
    assert pair_recall(scores, own, ks=(1, 2, 3)) == {"r@1": 0.5, "r@2": 0.5, "r@3": 1.0}


def test_matching_accuracy() -> None:
    assert matching_accuracy([0.9, 0.6, 0.4], [0.1, 0.5, 0.2]) == pytest.approx(4 / 6)
    assert matching_accuracy([0.5], [0.49]) == 1.0


def test_rank_is_stable_and_rejects_nan() -> None:
    assert rank(np.array([[1.0, 2.0, 2.0, 0.0]])).tolist() == [[1, 2, 0, 3]]
    with pytest.raises(ValueError, match="NaN"):
        rank(np.array([[np.nan, 1.0]]))


def test_precision_recall_curve_needs_relevant_items() -> None:
    with pytest.raises(ValueError):
        precision_recall_curve(np.zeros((1, 3), dtype=bool))
