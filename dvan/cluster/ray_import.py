"""The image backbone on Ray workers, for :func:`dvan.library.import_paths`.

The driver (the process running ``dvan library add``) still reads and tiles the rasters and is
the only writer of the library: it sends batches of tile pixels to a pool of backbone actors (one
per GPU when the cluster has GPUs, else one per CPU), keeps a few batches in flight, and commits
each batch's features in order as they arrive. So the library's commit stays atomic and
crash-safe exactly as for a local import: a killed driver leaves whole batches only, and running
the import again completes it. A killed worker's batches are sent to the other workers at once
(and Ray restarts it in the background); the loss is reported by worker. A batch that fails on
every try, or that the backbone itself raises on, fails its files by name and the rest of the
import goes on.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from dvan.cluster.runtime import connect
from dvan.errors import ClusterError, WorkerFailedError

#: Times a batch whose worker died is sent to another worker (and times Ray restarts a dead worker).
WORKER_RETRIES = 3
#: Batches kept in flight per worker: one computing, one queued behind it, so a worker never waits on the driver.
IN_FLIGHT_PER_WORKER = 2


class BackboneWorker:
    """A Ray actor holding one loaded backbone (its ImageNet weights must be installed on the worker's node)."""

    def __init__(self, backbone: str, device: str) -> None:
        from dvan.model.image_branch import create_backbone

        self.backbone = create_backbone(backbone, device)

    def describe(self) -> dict[str, Any]:
        """Where this worker runs (its node, process and device), for reports."""
        import ray

        return {"node": ray.util.get_node_ip_address(), "pid": os.getpid(), "device": str(self.backbone.device)}

    def features(self, images: list[np.ndarray]) -> np.ndarray:
        """V_I of the images, float32 (N, dim)."""
        return self.backbone.features(images)


class RayFeatureRunner:
    """A :class:`dvan.library.importer.FeatureRunner` over a pool of Ray backbone actors.

    Args:
        backbone: the library's backbone name.
        workers: actors to start (default: one per GPU of the cluster, else one per CPU).
        use_gpu: put each actor on a GPU (default: when the cluster has any).
        retries: times a batch whose worker died is sent again before it fails (and restarts of a dead actor).

    Raises:
        ClusterError: the workers cannot start or cannot load the backbone (names a worker and why).
    """

    def __init__(self, backbone: str, workers: int | None = None, use_gpu: bool | None = None,
                 retries: int = WORKER_RETRIES) -> None:
        import ray

        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
        self.use_gpu = gpus > 0 if use_gpu is None else use_gpu
        count = workers if workers is not None else (gpus if self.use_gpu else max(1, cpus))
        if count < 1:
            raise ClusterError(f"--ray-workers {count}: start at least one worker")
        # a dead worker is restarted in the background while its batches go to the others at once
        actor = ray.remote(num_cpus=1, num_gpus=1 if self.use_gpu else 0, max_restarts=retries,
                           max_task_retries=0)(BackboneWorker)
        self.name = backbone
        # typed Any: Ray's actor handles are typed from the class, and their .remote methods are not
        self.actors: list[Any] = [actor.remote(backbone, "cuda" if self.use_gpu else "cpu") for _ in range(count)]
        self.in_flight = IN_FLIGHT_PER_WORKER * count
        self.retries = retries
        #: One line per batch a dead worker lost (the batch was computed again elsewhere, or failed by name).
        self.lost: list[str] = []
        self._avoid: set[int] = set()
        self._next = 0
        try:
            self.workers = ray.get([a.describe.remote() for a in self.actors])
        except ray.exceptions.RayError as exc:
            self.close()
            raise ClusterError(f"Ray workers cannot load the {backbone} backbone: {_cause(exc)}; install dvan and "
                               "its weights on every worker node (see 'dvan info')") from exc

    def submit(self, images: list[np.ndarray], label: str) -> Callable[[], np.ndarray]:
        """Send a batch to the next worker (round robin); the returned call waits for its features.

        A batch whose worker dies is sent again to another worker (up to ``retries`` times) and the
        loss is recorded in :attr:`lost`; a batch the backbone itself raises on fails at once.
        """
        import ray

        sent = [self._send(images)]

        def wait() -> np.ndarray:
            for attempt in range(self.retries + 1):
                reference, index = sent[-1]
                worker = self.workers[index]
                where = f"Ray worker on {worker['node']} (pid {worker['pid']})"
                try:
                    return np.asarray(ray.get(reference), dtype=np.float32)
                except ray.exceptions.RayTaskError as exc:  # the backbone raised: computing again would too
                    raise WorkerFailedError(f"{label}: {where} failed computing its features ({_cause(exc)}); "
                                            "import the file again") from exc
                except ray.exceptions.RayError as exc:  # the worker died or cannot be reached
                    self.lost.append(f"{where}: {_cause(exc)} (batch of {label})")
                    self._avoid.add(index)
                    if attempt == self.retries:
                        raise WorkerFailedError(f"{label}: {where} died computing its features and so did "
                                                f"{self.retries} other tries ({_cause(exc)}); import the file "
                                                "again") from exc
                    sent.append(self._send(images))
            raise AssertionError("unreachable")

        return wait

    def _send(self, images: list[np.ndarray]) -> tuple[Any, int]:
        """Submit to the next worker not seen failing (all of them again once each has failed: Ray restarts them)."""
        if len(self._avoid) >= len(self.actors):
            self._avoid.clear()
        while True:
            index = self._next % len(self.actors)
            self._next += 1
            if index not in self._avoid:
                return self.actors[index].features.remote(images), index

    def close(self) -> None:
        """Stop the actors (the cluster stays up)."""
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []


def _cause(exc: BaseException) -> str:
    """The first line of a Ray error, without its traceback."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(exc).__name__


def ray_runner(address: str, backbone: str, workers: int | None = None) -> RayFeatureRunner:
    """Connect to the cluster at ``address`` and start the backbone workers (see :func:`dvan.cluster.runtime.connect`).

    Raises:
        ClusterMissingError: Ray is not installed.
        ClusterError: no cluster at ``address``, or its workers cannot load the backbone.
    """
    connect(address)
    return RayFeatureRunner(backbone, workers)
