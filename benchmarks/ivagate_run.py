"""The controller under test as its own process (``ivagate run``), with one bot for every call,
and a client of its HTTP API: its CPU and memory are its own, its figures come from
``GET /metrics``."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from tests.support.edge import free_port

from benchmarks.cores import started_on
from ivagate.bots.base import Bot

__all__ = ["ROOT", "Controller", "controller_process", "metric_value", "wait_ready"]

TOKEN = "bench"
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Controller:
    """The ``ivagate run`` process under test and a client of its API."""

    process: subprocess.Popen[bytes]
    api: str

    @property
    def stats(self) -> psutil.Process:
        return psutil.Process(self.process.pid)

    async def samples(self) -> list[Sample]:
        """Every sample ``GET /metrics`` gives now."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.api}/metrics") as response,
        ):
            text = await response.text()
        return [s for family in text_string_to_metric_families(text) for s in family.samples]

    async def metric(self, name: str, **labels: str) -> float:
        return metric_value(await self.samples(), name, **labels)


def metric_value(samples: Iterable[Sample], name: str, **labels: str) -> float:
    """The value of sample ``name`` with ``labels`` (summed over its other labels; 0 if
    there is none)."""
    return float(
        sum(
            s.value
            for s in samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )
    )


@contextlib.contextmanager
def controller_process(
    esl_port: int,
    esl_password: str,
    log: Path,
    core: int | None = None,
    *,
    bot: type[Bot],
    options: Mapping[str, Any] | None = None,
) -> Iterator[Controller]:
    """``ivagate run`` with ``bot`` (given ``options``) for every call, on ``core`` when
    given; its log to ``log``."""
    port = free_port("127.0.0.1")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "IVAGATE_ESL__HOST": "127.0.0.1",
        "IVAGATE_ESL__PORT": str(esl_port),
        "IVAGATE_ESL__PASSWORD": esl_password,
        "IVAGATE_API__PORT": str(port),
        "IVAGATE_API__TOKEN": TOKEN,
        "IVAGATE_ROUTING__DEFAULT_BOT": bot.name,
        "IVAGATE_CALL__BOTS": json.dumps({bot.name: f"{bot.__module__}:{bot.__qualname__}"}),
        "IVAGATE_CALL__FINAL_BYE_TIMEOUT": "120",
    }
    if options is not None:
        env["IVAGATE_CALL__BOT_OPTIONS"] = json.dumps({bot.name: dict(options)})
    env.pop("IVAGATE_CONFIG_FILE", None)
    command = [str(Path(sys.executable).with_name("ivagate")), "run"]
    pinned = contextlib.nullcontext() if core is None else started_on(core)
    with log.open("wb") as out, pinned:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    try:
        yield Controller(process, f"http://127.0.0.1:{port}")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_ready(controller: Controller, seconds: float = 30) -> None:
    """Until the controller has connected and opened the node (``/readyz`` answers 200)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{controller.api}/readyz", timeout=2):
                return
        except OSError:  # refused, or 503 (HTTPError) until ready
            time.sleep(0.2)
    raise TimeoutError("the controller never became ready")
