"""Calibration of the match probability: metrics against a naive reference, the Platt fit, folding it into the
scorer without changing rankings, and ``dvan calibrate`` end to end on a tiny collection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dvan.cli.main import main
from dvan.eval.calibration import fit_platt, fold_into_scorer, reliability, sigmoid
from dvan.eval.plots import plot_reliability
from dvan.model.factory import create_model
from dvan.model.fusion import FusionScorer


def _naive_ece(p: np.ndarray, y: np.ndarray, bins: int) -> float:
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = [(pi, yi) for pi, yi in zip(p, y, strict=True) if (lo < pi <= hi) or (b == 0 and pi == 0.0)]
        if inside:
            conf = sum(pi for pi, _ in inside) / len(inside)
            acc = sum(yi for _, yi in inside) / len(inside)
            total += abs(acc - conf) * len(inside)
    return total / len(p)


def test_reliability_matches_a_naive_reference() -> None:
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 1, 2000)
    p[:5] = [0.0, 1.0, 0.2, 0.4, 1 / 15]  # edges included
    y = rng.uniform(0, 1, 2000) < p ** 2  # over-confident on purpose
    curve = reliability(p, y, bins=15)
    assert curve.ece == pytest.approx(_naive_ece(p, y.astype(float), 15), abs=1e-12)
    assert curve.counts.sum() == 2000 and curve.brier == pytest.approx(np.mean((p - y) ** 2))
    assert curve.ece > 0.1  # p**2 outcomes are far from p
    assert reliability(p, rng.uniform(0, 1, 2000) < p).ece < 0.04  # outcomes drawn with probability p


def test_platt_recovers_the_map_and_folding_keeps_the_ranking() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0, 4, 20000)
    y = rng.uniform(0, 1, z.size) < sigmoid(0.4 * z - 1.5)
    scale, offset = fit_platt(z, y)
    assert scale == pytest.approx(0.4, abs=0.03) and offset == pytest.approx(-1.5, abs=0.08)

    torch.manual_seed(0)
    scorer = FusionScorer(8, 6, fusion_dim=16)
    gallery, queries = scorer.gallery_projection(torch.randn(30, 8)), scorer.query_projection(torch.randn(4, 6))
    before = scorer.cross_logits(gallery, queries).detach()
    fold_into_scorer(scorer, 0.5, -2.0)
    after = scorer.cross_logits(gallery, queries).detach()
    assert torch.allclose(after, 0.5 * before - 2.0, atol=1e-5)
    assert torch.equal(torch.argsort(after, dim=1), torch.argsort(before, dim=1))
    pairs = scorer.match_probability(torch.randn(5, 8), torch.randn(5, 6))  # the naive path agrees
    assert torch.all((pairs > 0) & (pairs < 1))


def test_cli_calibrates_on_validation_and_eval_reports_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from make_tiny_collection import make_tiny_collection

    manifest = make_tiny_collection(tmp_path / "collection")
    cache, run = tmp_path / "cache", tmp_path / "run"
    assert main(["train", str(manifest), str(run), "--epochs", "1", "--device", "cpu", "--cache-dir", str(cache),
                 "--quiet"]) == 0
    calibrated = tmp_path / "calibrated.safetensors"
    assert main(["calibrate", str(run / "best.safetensors"), str(manifest), "--out", str(calibrated), "--device", "cpu",
                 "--cache-dir", str(cache), "--quiet"]) == 0
    assert "expected calibration error" in capsys.readouterr().out
    record = create_model(checkpoint=calibrated, device="cpu").info["calibration"]
    assert record["split"] == "val" and record["ece_after"] <= record["ece_before"] + 1e-9

    reports = {}
    for name, checkpoint in (("raw", run / "best.safetensors"), ("calibrated", calibrated)):
        out = tmp_path / f"{name}.json"
        assert main(["eval", str(checkpoint), str(manifest), "--split", "val", "--json", str(out), "--device", "cpu",
                     "--cache-dir", str(cache), "--quiet"]) == 0
        reports[name] = json.loads(out.read_text())
    # the ranking metrics are the same; the fitted split's calibration error is what the fit promised
    assert reports["raw"]["audio_to_image"]["map"] == pytest.approx(reports["calibrated"]["audio_to_image"]["map"])
    assert reports["calibrated"]["calibration"]["ece"] == pytest.approx(record["ece_after"], abs=1e-3)
    png = plot_reliability({k: r["calibration"] for k, r in reports.items()}, tmp_path / "reliability.png")
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000
