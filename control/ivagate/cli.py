"""The ``ivagate`` command.

* ``ivagate run``: the controller and its HTTP API in one asyncio process, on uvloop's
  event loop (about a fifth less CPU per call than asyncio's own: benchmarks/controller.py).
* ``ivagate check-config``: every invalid setting with its path and the reason.
* ``ivagate config-reference``: the settings as a Markdown table (the README's reference).
* ``ivagate emulate ...`` / ``ivagate stand-in ...``: commands of other packages, registered
  as entry points of the group ``ivagate.commands`` (the conformance kit, ``ivagate-kit``).

``--config FILE`` names the TOML settings file (same as ``IVAGATE_CONFIG_FILE``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from importlib.metadata import entry_points

import uvloop
from aiohttp import web
from pydantic import ValidationError

from .api import create_app
from .bots.registry import BotLoadError
from .config_reference import render as render_config_reference
from .controller import Controller
from .log import setup_logging
from .settings import CONFIG_FILE_ENV, Settings
from .validation import problems as validation_problems

__all__ = ["Server", "config_problems", "main"]

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    plugins = {command.name: command for command in entry_points(group="ivagate.commands")}
    if args and args[0] in plugins:
        return int(plugins[args[0]].load()(args[1:]))
    parser = argparse.ArgumentParser(prog="ivagate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", metavar="FILE", help="TOML settings file")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the controller and its HTTP API")
    commands.add_parser("check-config", help="validate the settings and bots, then exit")
    commands.add_parser("config-reference", help="print every setting as a Markdown table")
    for name, command in plugins.items():
        origin = command.dist.name if command.dist else command.module
        commands.add_parser(name, help=f"from {origin} ('ivagate {name} --help')")
    if args and not args[0].startswith("-") and args[0] not in commands.choices:
        parser.exit(
            2, f"ivagate: no command {args[0]!r} (emulate, stand-in: install ivagate-kit)\n"
        )
    options = parser.parse_args(args)
    if options.command == "config-reference":
        print(render_config_reference(), end="")
        return 0
    if options.config:
        os.environ[CONFIG_FILE_ENV] = options.config
    settings, problems = config_problems()
    if problems or settings is None:
        for problem in problems:
            print(problem, file=sys.stderr)
        return 2
    if options.command == "check-config":
        print("configuration OK")
        return 0
    setup_logging(settings.log)
    uvloop.run(Server(settings).serve())
    return 0


def config_problems() -> tuple[Settings | None, list[str]]:
    """Load the settings and bots; each problem is ``path: reason``."""
    try:
        settings = Settings()  # required fields come from the environment or the file
    except ValidationError as exc:
        return None, validation_problems(exc)
    problems: list[str] = []
    if settings.esl.password.get_secret_value() == "ClueCon":
        problems.append("esl.password: FreeSWITCH's default password is refused")
    controller = Controller(settings)
    routing = settings.routing
    try:
        controller.bots.load_all(routing.routed_bots())
    except BotLoadError as exc:
        problems.append(f"call.bots: {exc}")
    if not routing.dids and not routing.bot_header:
        # a warning, not a problem: a node may be set up before its DIDs are known
        fate = "gets 404" if routing.default_bot is None else f"goes to {routing.default_bot!r}"
        print(
            f"warning: no routing.dids and no routing.bot_header: every call {fate}",
            file=sys.stderr,
        )
    routes: dict[str, str | None] = {f"routing.dids.{d}": bot for d, bot in routing.dids.items()}
    routes["routing.default_bot"] = routing.default_bot
    for path, bot in routes.items():
        if bot is not None and bot not in controller.bots:
            problems.append(f"{path}: unknown bot {bot!r}")
    return settings, problems


class Server:
    """``ivagate run`` as named steps: startup, main loop, shutdown (after uvicorn)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.controller = Controller(settings)
        self.runner: web.AppRunner | None = None
        self.should_exit = asyncio.Event()
        self._stopping: asyncio.Future[None] | None = None

    async def serve(self) -> None:
        await self.startup()
        await self.main_loop()
        await self.shutdown()

    async def startup(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.handle_exit)
        await self.controller.start()
        self.runner = web.AppRunner(create_app(self.controller, self.settings))
        await self.runner.setup()
        api = self.settings.api
        await web.TCPSite(self.runner, api.host, api.port).start()
        log.info("ivagate running: HTTP API on %s:%d", api.host, api.port)

    async def main_loop(self) -> None:
        await self.should_exit.wait()

    async def shutdown(self) -> None:
        log.info("shutting down")
        # 1. Close the gate (ivagate_ready=false), let active calls finish, end the rest.
        #    A second signal skips the wait.
        self._stopping = asyncio.ensure_future(self.controller.stop())
        try:
            await self._stopping
        except asyncio.CancelledError:
            log.warning("forced exit: calls were not given time to finish")
            await self.controller.esl.close()
        # 2. Stop the HTTP API last, so /readyz and /calls stay visible while draining.
        if self.runner is not None:
            await self.runner.cleanup()
        log.info("stopped")

    def handle_exit(self) -> None:
        if self.should_exit.is_set() and self._stopping is not None:
            self._stopping.cancel()  # second signal: force exit
        self.should_exit.set()
