#!/usr/bin/env python3
"""Sends one SIP OPTIONS over UDP from 127.0.0.1 (an address of the edge's probe allowlist)
to HOST:PORT and exits 0 if the answer is 200: what a health probe of the edge sees.

Usage: sip-options-probe.py HOST PORT TIMEOUT_SECONDS
"""

import socket
import sys
import uuid


def main(host: str, port: int, timeout: float) -> int:
    tag = uuid.uuid4().hex
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(timeout)
        local = sock.getsockname()[1]
        request = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{tag}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@127.0.0.1>;tag={tag}\r\n"
            f"To: <sip:{host}:{port}>\r\n"
            f"Call-ID: {tag}@127.0.0.1\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.sendto(request.encode(), (host, port))
        try:
            status = sock.recv(65535).decode(errors="replace").split("\r\n", 1)[0]
        except TimeoutError:
            print(f"no answer from {host}:{port} within {timeout}s")
            return 1
    print(status)
    return 0 if status.startswith("SIP/2.0 200 ") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
