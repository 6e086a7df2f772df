"""Figures the benchmarks share: CPU time of processes, percentiles of samples and of
Prometheus histograms."""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import psutil
from prometheus_client.samples import Sample

__all__ = ["CpuMeter", "cpu_seconds", "histogram_quantile", "percentile", "runqueue_seconds"]


def cpu_seconds(process: psutil.Process) -> float:
    """CPU time (user + system, every thread) ``process`` has used so far."""
    times = process.cpu_times()
    return float(times.user + times.system)


def runqueue_seconds(process: psutil.Process) -> float:
    """Time ``process``'s threads have spent runnable but waiting for a CPU (Linux
    schedstat): what other processes on its core cost it."""
    total = 0
    for thread in process.threads():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            stat = Path(f"/proc/{process.pid}/task/{thread.id}/schedstat").read_text()
            total += int(stat.split()[1])
    return total / 1e9


class CpuMeter:
    """CPU over a stretch of time, each as a share of one core (of the machine, for
    ``steal``): of each named process, and (``"<name> wait"``) the time its threads were
    runnable but waited for a CPU (what other processes on its core cost it); of each core
    (``"core <n>"``), whatever ran there; and the time the hypervisor took from this
    machine (``steal``): on a shared host, runs with steal cost visibly more."""

    def __init__(self, processes: Mapping[str, psutil.Process]) -> None:
        self.processes = dict(processes)
        self.at, self.started = self.seconds()

    def seconds(self) -> tuple[float, dict[str, float]]:
        """When, and the seconds so far: CPU times first, beside the clock; the run-queue
        waits (a file per thread) last, their error being small against them."""
        at = time.perf_counter()
        used = {name: cpu_seconds(p) for name, p in self.processes.items()}
        cores = psutil.cpu_times(percpu=True)
        busy = {
            f"core {n}": t.user + t.nice + t.system + t.irq + t.softirq for n, t in enumerate(cores)
        }
        steal = sum(t.steal for t in cores) / len(cores)
        waited = {f"{name} wait": runqueue_seconds(p) for name, p in self.processes.items()}
        return at, used | busy | {"steal": steal} | waited

    def read(self) -> dict[str, float]:
        at, now = self.seconds()
        return {name: (now[name] - self.started[name]) / (at - self.at) for name in now}


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def histogram_quantile(
    q: float, name: str, before: Iterable[Sample], after: Iterable[Sample]
) -> float:
    """Quantile ``q`` of the observations histogram ``name`` took between two reads of
    ``/metrics``, interpolated within its bucket as Prometheus's ``histogram_quantile``
    does (the highest finite bound when it falls beyond it; NaN with no observation)."""

    def buckets(samples: Iterable[Sample]) -> dict[float, float]:
        return {float(s.labels["le"]): s.value for s in samples if s.name == f"{name}_bucket"}

    start, end = buckets(before), buckets(after)
    counts = sorted((bound, end[bound] - start.get(bound, 0.0)) for bound in end)
    total = counts[-1][1] if counts else 0.0
    if not total:
        return math.nan
    rank, lower, below = q * total, 0.0, 0.0
    for bound, cumulative in counts:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (cumulative - below)
        lower, below = bound, cumulative
    return lower
