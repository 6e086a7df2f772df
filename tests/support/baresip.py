"""Debian's baresip (1.0.0) as a caller: a real SIP/SRTP user agent, configured in a directory
of its own (``-f``; ``~/.baresip`` is never read or written).

It sends a WAV (module aufile) and records what it hears: 1.0.0's aufile is a source only,
so the sndfile filter dumps the decoded audio (``dump-<time>-dec.wav``) while ALSA's ``null``
device plays it to nowhere. ``-s`` traces every SIP message into its log.

Its TLS connections come from the kernel's choice of source address (libre 1.1.0's SIP
transport binds only its listening sockets), always 127.0.0.1 toward loopback, while the edge
takes calls from ``CALLER`` only: ``caller_nat`` rewrites that source as a NAT in front of
RingCX would. Over UDP it sends from its bound ``CALLER`` socket as it is.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ivagate_kit.audio import read_wav

from .edge import CALLER, EDGE_HOST

__all__ = ["Baresip", "caller_nat"]

BARESIP = shutil.which("baresip") or "/usr/bin/baresip"
NFT = shutil.which("nft") or "/usr/sbin/nft"
QUIT_AFTER = 30  # seconds: baresip quits by itself (-t) should a test leave it running

# What it loads, in this order; "mediaenc" in the account picks srtp (SDES) or nothing.
MODULES = ["g711", "srtp", "aufile", "sndfile", "alsa"]


class Baresip:
    """One baresip process placing one call; a context manager that stops it."""

    def __init__(self, workdir: Path, send: Path, *, mediaenc: str | None, cafile: Path) -> None:
        self.workdir = workdir
        self.recordings = workdir / "heard"
        self.recordings.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "baresip.log"
        config = {
            "module_path": "/usr/lib/baresip/modules",
            # port 0: 1.0.0 puts TLS on the SIP port + 1 otherwise, which may be taken
            "sip_listen": f"{CALLER}:0",
            # 1.0.0 loads it but never checks the edge's certificate (no SSL_VERIFY_PEER in
            # libre 1.1.0's client context; seen: a CA file that did not sign it changes nothing)
            "sip_cafile": str(cafile),
            "net_interface": CALLER,  # the SDP's address ("lo" fails: loopback is skipped)
            "audio_source": f"aufile,{send}",  # the WAV must be at the codec's 8 kHz, mono
            "audio_player": "alsa,null",
            "snd_path": str(self.recordings),
            # no jitter buffer: every packet is decoded (and recorded) as it comes; the
            # default (5-10 frames) keeps the last ones of a reply back, never recorded
            "jitter_buffer_delay": "0-0",
        }
        lines = [f"{key}\t{value}" for key, value in config.items()]
        lines += [f"module\t{name}.so" for name in MODULES]
        lines += ["module_tmp\taccount.so", "module_app\tmenu.so"]  # accounts file; /dial
        (workdir / "config").write_text("\n".join(lines) + "\n")
        account = f"<sip:ringcx@{CALLER}>;regint=0;audio_codecs=PCMU"
        (workdir / "accounts").write_text(account + (f";mediaenc={mediaenc}" if mediaenc else ""))
        self._proc: subprocess.Popen[bytes] | None = None

    def dial(self, uri: str) -> None:
        """Start baresip calling ``uri``. It sends its WAV until the end, then hangs up."""
        assert Path(BARESIP).exists(), "baresip is missing: scripts/install-deps installs it"
        with self.log_path.open("wb") as log:
            cmd = [BARESIP, "-f", str(self.workdir), "-s", "-t", str(QUIT_AFTER)]
            self._proc = subprocess.Popen(
                [*cmd, "-e", f"/dial {uri}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        """Quit (SIGTERM: baresip ends its calls and closes its recordings)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)

    def heard(self) -> array[int]:
        """What baresip decoded from the call, 16-bit samples at 8 kHz."""
        (dump,) = self.recordings.glob("dump-*-dec.wav")
        return read_wav(dump)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Baresip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def caller_nat(port: int) -> Iterator[None]:
    """While open, TCP from 127.0.0.1 to the edge's ``port`` leaves as from ``CALLER`` (an
    nftables table of its own, postrouting SNAT; removed on exit)."""
    table = f"ivagate_caller_nat_{port}"
    rule = f"ip saddr {EDGE_HOST} ip daddr {EDGE_HOST} tcp dport {port} snat to {CALLER}"
    chain = f"chain out {{\ntype nat hook postrouting priority srcnat; policy accept;\n{rule}\n}}"
    ruleset = f"table ip {table} {{\n{chain}\n}}\n"
    assert Path(NFT).exists(), "nft is missing: scripts/install-deps installs nftables"
    subprocess.run([NFT, "-f", "-"], input=ruleset, text=True, check=True)
    try:
        yield
    finally:
        subprocess.run([NFT, "delete", "table", "ip", table], check=True)
