"""Naive per-pair fusion vs the decomposed scorer, side by side in one run.

    .venv/bin/python benchmarks/fusion_speed.py [--sizes 10000 100000] [--device auto] [--repeats 5]

Naive: equations 4-5 run for every (tile, query) pair from the image feature V_I and the audio
feature V_S. Decomposed: the gallery projections G = W_I V_I + b are precomputed once (as a tile
index stores them) and each query costs one add + tanh + mat-vec over G. Both give the same
probabilities (checked here on every run). Writes benchmarks/results/fusion_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.machine import describe_machine  # noqa: E402
from dvan.device import resolve_device  # noqa: E402
from dvan.model.fusion import FusionScorer, naive_probability  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _median_seconds(fn, repeats: int, device: torch.device) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.inference_mode()
def measure(size: int, device: torch.device, repeats: int) -> dict[str, float]:
    """Median seconds of both paths for one query against ``size`` tiles, and their max difference."""
    torch.manual_seed(0)
    scorer = FusionScorer(1280, 1024, 512).to(device).eval()
    image_features = torch.randn(size, 1280, device=device)
    audio_feature = torch.randn(1, 1024, device=device)
    gallery = scorer.gallery_projection(image_features)  # once, at indexing time

    def naive() -> torch.Tensor:
        return naive_probability(scorer, image_features, audio_feature[0])

    def decomposed() -> torch.Tensor:
        return scorer.cross_probability(gallery, scorer.query_projection(audio_feature))[0]

    difference = float((naive() - decomposed()).abs().max())
    naive_s = _median_seconds(naive, repeats, device)
    decomposed_s = _median_seconds(decomposed, repeats, device)
    row = {"tiles": size, "naive_ms": naive_s * 1000, "decomposed_ms": decomposed_s * 1000,
           "ratio": naive_s / decomposed_s, "max_abs_difference": difference}
    if device.type == "cpu":
        from dvan.search.kernels import fast_logits

        gallery_np = gallery.numpy()
        direction, offset = (t.numpy() for t in scorer.decision_vector())

        def kernel() -> torch.Tensor:
            query = scorer.query_projection(audio_feature)[0].numpy()
            return torch.sigmoid(torch.from_numpy(fast_logits(gallery_np, query, direction, float(offset))))

        kernel()  # compile (numba caches it on disk after the first run)
        kernel_s = _median_seconds(kernel, repeats, device)
        row.update({"fused_kernel_ms": kernel_s * 1000, "fused_ratio": naive_s / kernel_s,
                    "fused_max_abs_difference": float((naive() - kernel()).abs().max())})
    return row


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its results."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    rows = [measure(size, device, args.repeats) for size in args.sizes]
    report = {"command": "python benchmarks/fusion_speed.py " + " ".join(argv or sys.argv[1:]),
              "device": str(device), "machine": describe_machine(), "results": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if device.type == "cpu" else f"_{device.type}"
    (args.out / f"fusion_speed{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Fusion scoring: naive vs decomposed ({device}, {report['machine']['cpu']}, "
             f"{report['machine']['cores']} cores, torch threads {report['machine']['torch_threads']}, "
             f"load average {report['machine']['load_average'][0]:.1f} at start)", "",
             f"Command: `{report['command']}`", "",
             "| tiles | naive (ms) | decomposed, torch (ms) | speed-up | decomposed, fused CPU kernel (ms) | speed-up "
             "| max abs difference in p |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        fused = (f"{row['fused_kernel_ms']:.2f} | {row['fused_ratio']:.0f}x" if "fused_kernel_ms" in row else "- | -")
        worst = max(row["max_abs_difference"], row.get("fused_max_abs_difference", 0.0))
        lines.append(f"| {row['tiles']:,} | {row['naive_ms']:.1f} | {row['decomposed_ms']:.2f} | "
                     f"{row['ratio']:.1f}x | {fused} | {worst:.1e} |")
    (args.out / f"fusion_speed{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
