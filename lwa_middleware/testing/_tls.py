"""A throwaway certificate authority for the emulator's ``tls=True`` mode.

At start-up the emulator makes a CA (valid for a day) and a server
certificate it signed for ``127.0.0.1``, ``::1`` and ``localhost``, both with
P-256 keys (a few milliseconds to make). The CA certificate is written to a
private temporary file, :attr:`LocalCA.ca_file`, for clients that take a path
(``verify=lwa.ca_file``); :meth:`LocalCA.client_context` gives an
``ssl.SSLContext`` trusting it and nothing else. The files are removed when
the emulator is garbage collected or the interpreter exits.

Needs the ``cryptography`` package (in the ``test`` extra); without it
``LWAEmulator(tls=True)`` raises a clear ``RuntimeError``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import ssl
import tempfile
import weakref

__all__ = ["LocalCA"]


def _pem_files() -> tuple[bytes, bytes, bytes]:
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "LWAEmulator(tls=True) needs the 'cryptography' package: "
            "pip install cryptography (or pip install 'lwa-middleware[signin]', which brings it)"
        ) from None

    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "LWA emulator test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                    x509.DNSName("localhost"),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return ca_cert.public_bytes(pem), cert.public_bytes(pem), key_pem


class LocalCA:
    """A CA and a loopback server certificate, as files and SSL contexts."""

    def __init__(self) -> None:
        ca_pem, cert_pem, key_pem = _pem_files()
        self._dir = tempfile.mkdtemp(prefix="lwa-emulator-tls-")
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._dir, True)
        self.ca_file = os.path.join(self._dir, "ca.pem")
        chain = os.path.join(self._dir, "server.pem")
        key_file = os.path.join(self._dir, "server.key")
        for path, data in ((self.ca_file, ca_pem), (chain, cert_pem + ca_pem), (key_file, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        self.server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.server_context.load_cert_chain(chain, key_file)
        os.remove(key_file)  # loaded: the private key need not stay on disk

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this CA only (hostname checked)."""
        return ssl.create_default_context(cafile=self.ca_file)
