"""Command lines: ``emulate`` (place calls, print the report) and ``stand-in`` (a media node).

Both run as ``ivagate-kit <command>`` and, with the controller installed, ``ivagate <command>``
(entry points of the group ``ivagate.commands``). ``emulate`` exits 0 when every check of every
call passed, 1 when one failed, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
from collections.abc import Callable
from typing import Any, Literal

from ivagate_kit.load import run_load, summarize
from ivagate_kit.media_node import MediaNode, NodeScript
from ivagate_kit.plan import ByePolicy, CallPlan
from ivagate_kit.uac import run_call

__all__ = ["COMMANDS", "main", "run", "stand_in_main"]


def _bye(text: str) -> ByePolicy:
    if text in ("final", "never"):
        return text  # type: ignore[return-value]  # narrowed by the test above
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("use 'final', 'never' or seconds") from None


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def _emulate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ivagate emulate",
        description="Place calls to a bot platform the way RingCX does and check its answers.",
    )
    p.add_argument("target", help="host:port of the platform's SIP edge")
    p.add_argument("-t", "--transport", choices=["udp", "tcp", "tls"], default="tls")
    p.add_argument("--did", default="15550001000", help="Request-URI user part (bot selection)")
    p.add_argument("--caller", default="+16505550100", help="From user part")
    p.add_argument(
        "-H", "--header", type=_header, action="append", default=[], help="'Name: value'"
    )
    srtp = p.add_mutually_exclusive_group()
    srtp.add_argument("--srtp", dest="srtp", action="store_true", default=None)
    srtp.add_argument("--no-srtp", dest="srtp", action="store_false")
    p.add_argument(
        "--bye", type=_bye, default="final", help="final (default) | never | seconds after 200"
    )
    p.add_argument(
        "--refresh",
        choices=["reinvite", "update"],
        action="append",
        default=[],
        help="mid-call re-INVITE or UPDATE once answered (repeat, in order)",
    )
    p.add_argument("--ping-interval", type=float, default=2.0, help="seconds; 0 = no pings")
    p.add_argument(
        "--local-host", help="source address to bind (default: the one routing to the target)"
    )
    p.add_argument("--tls-verify", action="store_true", help="verify the edge's certificate")
    p.add_argument("--tls-ca", help="CA bundle for --tls-verify")
    p.add_argument("--tls-cert", help="client certificate (PEM)")
    p.add_argument("--tls-key", help="client certificate key (PEM)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per wait")
    p.add_argument("--expect", type=int, default=200, help="expected INVITE final status")
    p.add_argument("--dtmf", default="", help="keys to press once answered (0-9 * # A-D)")
    p.add_argument(
        "--dtmf-mode",
        choices=["rfc2833", "info"],
        default="rfc2833",
        help="RTP telephone-events in the audio stream, or SIP INFO application/dtmf-relay",
    )
    p.add_argument("--dtmf-delay", type=float, default=1.0, help="seconds after 200 OK")
    p.add_argument(
        "--info-answer",
        type=_info_answer,
        default=200,
        help="status for a well-formed INFO (e.g. 481, 500), or 'never' to leave it unanswered",
    )
    p.add_argument(
        "--ack-delay", type=float, default=0.0, help="seconds between the 2xx and our ACK"
    )
    p.add_argument(
        "--play",
        default="silence",
        help="what the caller says once answered: silence (default), tone:HZ[:DBFS[:SECONDS]] "
        "(SECONDS: that long, then silence), or a WAV file (mono 16-bit, 8 or 16 kHz)",
    )
    p.add_argument("--record", metavar="PATH", help="write what the caller heard as a WAV")
    p.add_argument(
        "--tone-power",
        type=int,
        action="append",
        metavar="HZ",
        help="report the power of this tone in what was heard (repeat; default: 440)",
    )
    p.add_argument(
        "--no-media",
        dest="media",
        action="store_false",
        help="signalling only: no RTP socket, the offer's port is advertised only",
    )
    p.add_argument("--calls", type=int, default=1)
    p.add_argument("--rate", type=float, default=1.0, help="calls started per second")
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    return p


def _source_address(host: str) -> str:
    """The local address the system would send from toward ``host`` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((host, 9))
        return str(probe.getsockname()[0])


def _info_answer(value: str) -> int | Literal["never"]:
    return "never" if value == "never" else int(value)


def main(argv: list[str] | None = None) -> int:
    """``ivagate emulate``: 0 when every check passed, 1 otherwise, 2 on bad arguments."""
    parser = _emulate_parser()
    args = parser.parse_args(argv)
    try:
        plan = CallPlan(args.target, args.transport)
        local_host = args.local_host or _source_address(plan.address[0])
    except (ValueError, OSError) as e:
        parser.error(f"target {args.target!r}: {e}")
    try:
        plan = CallPlan(
            target=args.target,
            transport=args.transport,
            did=args.did,
            caller=args.caller,
            headers=dict(args.header),
            srtp=args.srtp,
            bye=args.bye,
            refresh=args.refresh,
            ping_interval=args.ping_interval,
            local_host=local_host,
            tls_verify=args.tls_verify,
            tls_ca=args.tls_ca,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            timeout=args.timeout,
            expect=args.expect,
            dtmf=args.dtmf,
            dtmf_mode=args.dtmf_mode,
            dtmf_delay=args.dtmf_delay,
            info_answer=args.info_answer,
            ack_delay=args.ack_delay,
            media=args.media,
            play=args.play,
            record=args.record,
            **({"tones": args.tone_power} if args.tone_power else {}),  # else the plan's default
        )
        if args.calls == 1:
            reports = [asyncio.run(run_call(plan))]
        else:
            reports = asyncio.run(run_load(plan, args.calls, args.rate, args.concurrency))
    except ValueError as e:
        parser.error(str(e))
    summary = summarize(reports)
    if args.json:
        out: dict[str, Any] = reports[0].to_dict()
        if args.calls > 1:
            out = {"summary": vars(summary), "calls": [r.to_dict() for r in reports]}
        print(json.dumps(out, indent=2))
    else:
        # Load runs print failing calls in full; passing ones only count in the summary.
        shown = reports if args.calls == 1 else [r for r in reports if not r.ok]
        for report in shown:
            print(report.render(), end="\n\n")
        if args.calls > 1:
            print(summary.render())
    return 0 if summary.passed == summary.calls else 1


def _stand_in_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ivagate stand-in",
        description="A scripted stand-in media node (UAS) for testing an edge without FreeSWITCH.",
    )
    p.add_argument("--listen", default="127.0.0.1:5080", help="host:port")
    p.add_argument("-t", "--transport", choices=["udp", "tcp", "tls"], default="udp")
    p.add_argument("--answer", default="200", help="200, an error status, or 'hang'")
    p.add_argument(
        "--info", action="append", default=[], help="JSON body of an INFO (repeat, in order)"
    )
    p.add_argument("--info-interval", type=float, default=0.2)
    p.add_argument("--bye-after", type=float, help="seconds after the last INFO (default: wait)")
    p.add_argument("--early", type=int, action="append", default=[], help="e.g. 180 (repeat)")
    p.add_argument("--advertise", help="host[:port] for Contact when listening on 0.0.0.0")
    p.add_argument("--tls-cert", help="PEM certificate (default: a self-signed one)")
    p.add_argument("--tls-key")
    return p


def stand_in_main(argv: list[str] | None = None) -> int:
    """``ivagate stand-in``: run the stand-in media node until SIGINT/SIGTERM."""
    parser = _stand_in_parser()
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        parser.error(f"--listen must be host:port, not {args.listen!r}")
    try:
        infos = [json.loads(text) for text in args.info]
    except json.JSONDecodeError as e:
        parser.error(f"--info must be JSON: {e}")
    if args.answer != "hang" and not args.answer.isdigit():
        parser.error(f"--answer must be a status code or 'hang', not {args.answer!r}")
    try:
        script = NodeScript(
            answer="hang" if args.answer == "hang" else int(args.answer),
            infos=infos,
            info_interval=args.info_interval,
            bye_after=args.bye_after,
            early=args.early,
        )
    except ValueError as e:
        parser.error(f"--answer/--early: {e}")
    node = MediaNode(
        host.strip("[]"),
        int(port),
        args.transport,
        script,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        advertise=args.advertise,
        trace=lambda direction, text: print(direction, text, flush=True),
    )
    asyncio.run(_serve(node))
    return 0


async def _serve(node: MediaNode) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with node:
        print(f"stand-in media node on {node.transport} {node.host}:{node.port}", flush=True)
        await stop.wait()


COMMANDS: dict[str, Callable[[list[str] | None], int]] = {
    "emulate": main,
    "stand-in": stand_in_main,
}


def run(argv: list[str] | None = None) -> int:
    """``ivagate-kit emulate|stand-in ...``: the command's own exit status."""
    parser = argparse.ArgumentParser(prog="ivagate-kit", description="The RingCX conformance kit.")
    parser.add_argument("command", choices=COMMANDS, help="'ivagate-kit COMMAND --help' for more")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    return COMMANDS[options.command](options.args)
