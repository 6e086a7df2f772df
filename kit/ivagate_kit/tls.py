"""TLS contexts for the emulator (client) and the stand-in media node (server).

A server given no certificate gets a throwaway self-signed one, made with ``cryptography``,
so ``MediaNode(transport="tls")`` works out of the box on loopback.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["client_context", "self_signed", "server_context"]


# Shared per settings: loading the system CA store costs tens of ms, too much per call in a load.
@functools.lru_cache(maxsize=16)
def client_context(
    *, verify: bool, ca: str | None = None, cert: str | None = None, key: str | None = None
) -> ssl.SSLContext:
    """The caller's context: verification optional, client certificate optional."""
    ctx = ssl.create_default_context(cafile=ca)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def server_context(cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """A listening context; without ``cert`` a self-signed one for localhost is made."""
    if cert is None:
        cert, key = self_signed(Path(tempfile.mkdtemp(prefix="ivagate-emulator-tls-")))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


def self_signed(directory: Path, name: str = "localhost") -> tuple[str, str]:
    """Write ``cert.pem`` and ``key.pem`` (valid one year, SANs name + 127.0.0.1 + ::1)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [
        x509.DNSName(name),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return str(cert_path), str(key_path)
