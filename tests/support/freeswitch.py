"""A real FreeSWITCH for the tests that need one, found without a setting when it is installed.

Looked for in this order: ``IVAGATE_TEST_FREESWITCH_BIN`` (a binary) or
``IVAGATE_TEST_FREESWITCH_IMAGE`` (a Docker image); ``freeswitch`` on PATH; FreeSWITCH's default
prefix, ``/usr/local/freeswitch/bin/freeswitch``. Tests that run FreeSWITCH in a container take
the image, or else package the binary found into one with ``scripts/freeswitch-image`` (as an
operator would package a FreeSWITCH they built).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["CONF_DIR", "SKIP_REASON", "find_binary", "find_image"]

REPO = Path(__file__).resolve().parents[2]
CONF_DIR = REPO / "freeswitch"  # the media node's config tree
DEFAULT_BINARY = Path("/usr/local/freeswitch/bin/freeswitch")
HOST_IMAGE = "ivagate/freeswitch:host"

SKIP_REASON = (
    "needs a real FreeSWITCH 1.10 with the modules of freeswitch/autoload_configs/modules.conf.xml:"
    " none on PATH or at /usr/local/freeswitch/bin/freeswitch; install one there, or set "
    "IVAGATE_TEST_FREESWITCH_BIN (a binary) or IVAGATE_TEST_FREESWITCH_IMAGE (a Docker image)"
)


def find_binary() -> str | None:
    """The FreeSWITCH binary to run, or None (an image may still be configured)."""
    named = os.environ.get("IVAGATE_TEST_FREESWITCH_BIN")
    if named:
        return named
    if os.environ.get("IVAGATE_TEST_FREESWITCH_IMAGE"):
        return None  # the image was asked for
    on_path = shutil.which("freeswitch")
    if on_path:
        return on_path
    return str(DEFAULT_BINARY) if os.access(DEFAULT_BINARY, os.X_OK) else None


@functools.cache
def find_image() -> str | None:
    """A FreeSWITCH image: the one named, else one packaged from the binary found, else None."""
    named = os.environ.get("IVAGATE_TEST_FREESWITCH_IMAGE")
    if named:
        return named
    binary = find_binary()
    if binary is None:
        return None
    done = subprocess.run(
        [REPO / "scripts" / "freeswitch-image", binary, HOST_IMAGE],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"scripts/freeswitch-image {binary} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return HOST_IMAGE
