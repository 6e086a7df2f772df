"""Many emulated calls at a steady rate, and a summary of how they went."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

from ivagate_kit.plan import CallPlan
from ivagate_kit.report import CallReport
from ivagate_kit.uac import run_call

__all__ = ["LoadSummary", "run_load", "summarize"]


async def run_load(
    plan: CallPlan, calls: int = 1, rate: float = 1.0, concurrency: int = 50
) -> list[CallReport]:
    """Start ``calls`` calls, ``rate`` per second, at most ``concurrency`` at once."""
    if calls < 1 or rate <= 0 or concurrency < 1:
        raise ValueError("calls and concurrency must be at least 1 and rate positive")
    slots = asyncio.Semaphore(concurrency)

    async def one() -> CallReport:
        async with slots:
            return await run_call(plan)

    tasks = []
    for i in range(calls):
        if i:
            await asyncio.sleep(1.0 / rate)
        tasks.append(asyncio.create_task(one()))
    return list(await asyncio.gather(*tasks))


@dataclass
class LoadSummary:
    calls: int
    passed: int
    statuses: dict[str, int]  # INVITE final status ("none": no answer) -> calls
    failed_checks: dict[str, int]  # check name -> calls where it failed
    answer_p50: float | None  # seconds from INVITE to its final response
    answer_p95: float | None

    def render(self) -> str:
        lines = [
            f"Calls: {self.calls}  passed: {self.passed}  failed: {self.calls - self.passed}",
            "INVITE final status: "
            + ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items())),
        ]
        if self.answer_p50 is not None and self.answer_p95 is not None:
            lines.append(
                f"Answer time: p50 {self.answer_p50 * 1000:.1f} ms, "
                f"p95 {self.answer_p95 * 1000:.1f} ms"
            )
        lines += [f"  FAIL x{n}: {name}" for name, n in sorted(self.failed_checks.items())]
        return "\n".join(lines)


def summarize(reports: list[CallReport]) -> LoadSummary:
    times = sorted(r.answer_after for r in reports if r.answer_after is not None)

    def pct(p: float) -> float | None:
        return times[min(len(times) - 1, int(p * len(times)))] if times else None

    return LoadSummary(
        calls=len(reports),
        passed=sum(r.ok for r in reports),
        statuses=dict(Counter(str(r.invite_status or "none") for r in reports)),
        failed_checks=dict(Counter(c.name for r in reports for c in r.checks if not c.passed)),
        answer_p50=pct(0.5),
        answer_p95=pct(0.95),
    )
