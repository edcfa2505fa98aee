"""Ray, found lazily: an optional dependency that only ``--ray`` loads."""

from __future__ import annotations

from types import ModuleType

from dvan.errors import ClusterError, ClusterMissingError

#: What to run to get Ray (the "cluster" extra pins the tested version).
INSTALL_HINT = 'pip install ".[cluster]"'


def require_ray() -> ModuleType:
    """The ``ray`` module.

    Raises:
        ClusterMissingError: Ray is not installed; the message gives the install command.
    """
    try:
        import ray
    except ImportError as exc:
        raise ClusterMissingError(f"--ray needs Ray, which is not installed: run {INSTALL_HINT} in the dvan source "
                                  "folder (or pip install ray==2.60.0), or drop --ray to work on this machine") from exc
    return ray


def connect(address: str) -> ModuleType:
    """Connect this process to a Ray cluster (once; later calls reuse the connection).

    Args:
        address: "auto" (a cluster already running on this machine, else a new local one),
            or a cluster's address such as "10.0.0.5:6379" or "ray://head:10001".

    Raises:
        ClusterMissingError: Ray is not installed.
        ClusterError: no cluster answers at ``address``.
    """
    ray = require_ray()
    if ray.is_initialized():
        return ray
    try:
        if address == "auto":
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(f"--ray {address}: cannot connect to a Ray cluster there ({exc}); start one with "
                           "'ray start --head' on the head node, or pass --ray auto for a local one") from exc
    return ray
