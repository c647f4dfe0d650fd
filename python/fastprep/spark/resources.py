"""The CPUs Spark granted a task: fastprep's Rust threads follow them."""

from __future__ import annotations

from pyspark import TaskContext


def worker_cpus(default: int = 1) -> int:
    """CPUs Spark granted the running task (``spark.task.cpus``); ``default``
    outside a task. Never the machine's CPU count."""
    context = TaskContext.get()
    if context is None:
        return default
    try:
        return max(1, int(context.cpus()))
    except Exception:
        return default


#: The name of earlier releases.
task_cpus = worker_cpus
