"""Log lines are written in batches: when each goes out, and that none is lost."""

from __future__ import annotations

import asyncio
import io
import logging

import pytest

from ivagate.log import BatchingHandler


class Stream(io.StringIO):
    """Counts the writes a handler makes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def logged() -> tuple[logging.Logger, Stream, BatchingHandler]:
    stream = Stream()
    handler = BatchingHandler(stream, interval=0.05)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("ivagate.test_log")
    logger.propagate = False
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    return logger, stream, handler


async def test_lines_wait_at_most_the_interval_and_go_out_in_one_write(logged) -> None:
    logger, stream, _ = logged
    for n in range(3):
        logger.info("line %d", n)
    assert stream.getvalue() == ""
    await asyncio.sleep(0.15)
    assert stream.getvalue() == "INFO line 0\nINFO line 1\nINFO line 2\n"
    assert stream.writes == 1


async def test_a_warning_goes_out_at_once_with_the_lines_before_it(logged) -> None:
    logger, stream, _ = logged
    logger.info("before")
    logger.warning("trouble")
    assert stream.getvalue() == "INFO before\nWARNING trouble\n"


def test_lines_logged_outside_an_event_loop_go_out_at_once(logged) -> None:
    logger, stream, _ = logged
    logger.info("no loop")
    assert stream.getvalue() == "INFO no loop\n"


async def test_interval_zero_writes_every_line_at_once(logged) -> None:
    logger, stream, handler = logged
    handler.interval = 0
    logger.info("now")
    assert stream.getvalue() == "INFO now\n"


async def test_shutdown_writes_what_is_left(logged) -> None:
    logger, stream, handler = logged
    logger.info("last words")
    logging.shutdown([lambda: handler])  # what runs at exit, for every handler
    assert stream.getvalue() == "INFO last words\n"


async def test_a_line_says_what_its_arguments_were_when_it_was_logged(logged) -> None:
    """Lines are formatted with their batch, but their message is rendered at once."""
    logger, stream, handler = logged
    state = {"step": 1}
    logger.info("state %s", state)
    state["step"] = 2
    handler.flush()
    assert stream.getvalue() == "INFO state {'step': 1}\n"
