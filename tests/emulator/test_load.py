"""run_load: many calls at a rate, and the summary of how they went."""

from __future__ import annotations

import pytest

from ivagate_kit import CallPlan, run_load
from ivagate_kit.load import summarize
from ivagate_kit.media_node import MediaNode, NodeScript


async def test_load_places_every_call_and_summarizes() -> None:
    """Ten calls at a high rate over TCP: each is a separate dialog and every one passes."""
    script = NodeScript(infos=[{"final": True}], info_interval=0.0)
    async with MediaNode(transport="tcp", script=script) as node:
        plan = CallPlan(f"127.0.0.1:{node.port}", "tcp", ping_interval=0, timeout=5)
        reports = await run_load(plan, calls=10, rate=200.0, concurrency=4)
    assert all(r.ok for r in reports), [r.render() for r in reports if not r.ok]
    assert len({r.call_id for r in reports}) == 10 == len(node.invites)
    summary = summarize(reports)
    assert (summary.calls, summary.passed, summary.statuses) == (10, 10, {"200": 10})
    assert summary.answer_p50 is not None and "passed: 10" in summary.render()


async def test_summary_counts_failures_by_check() -> None:
    """Failed calls are counted per failed check and per INVITE status."""
    async with MediaNode(script=NodeScript(answer=486)) as node:
        reports = await run_load(CallPlan(f"127.0.0.1:{node.port}", timeout=5), calls=2, rate=100)
    summary = summarize(reports)
    assert summary.passed == 0 and summary.statuses == {"486": 2}
    assert summary.failed_checks == {"INVITE final status is 200": 2}


@pytest.mark.parametrize("bad", [{"calls": 0}, {"rate": 0.0}, {"concurrency": 0}])
async def test_bad_load_arguments_are_refused(bad: dict[str, float]) -> None:
    """Zero calls, rate or concurrency raise ValueError before any call is placed."""
    with pytest.raises(ValueError):
        await run_load(CallPlan("127.0.0.1:9"), **bad)  # type: ignore[arg-type]
