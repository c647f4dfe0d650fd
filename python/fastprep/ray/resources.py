"""The CPUs Ray granted a task or actor: fastprep's Rust threads follow them."""

from __future__ import annotations

import ray


def worker_cpus(default: int = 1) -> int:
    """The CPUs Ray granted the current task or actor (rounded, at least 1).

    Outside a Ray worker (or with ``num_cpus=0``) returns ``default``; never
    the machine's CPU count, which on a shared node would oversubscribe it.
    """
    try:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except Exception:  # not connected to Ray
        cpus = None
    if not cpus:
        return default
    return max(1, round(cpus))


#: The name of earlier releases.
assigned_cpus = worker_cpus


def threads(num_threads: int | None) -> int:
    return int(num_threads) if num_threads else worker_cpus()
