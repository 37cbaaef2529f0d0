# -*- test-case-name: tests.integration.test_harness -*-
"""
Generation of a throw-away public key infrastructure for tests.

L{makePKI} writes a certificate authority, a server certificate for
C{localhost} (and the loopback addresses), a client certificate, an unrelated
second authority and a server certificate for the wrong host name into a
directory.  L{sharedPKI} does that once per process in a temporary directory.

All keys are elliptic-curve keys on NIST P-256, which both pyOpenSSL and
Erlang/OTP (RabbitMQ) accept and which are much faster to generate than RSA.
"""

from __future__ import annotations

import atexit
import datetime
import ipaddress
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.python.filepath import FilePath

__all__ = ["PKI", "makePKI", "sharedPKI"]


@dataclass(frozen=True)
class PKI:
    """
    Paths of the PEM files making up a test PKI.

    @ivar directory: The directory holding all the files.
    @ivar caCert: The certificate of the authority that signed the server and
        client certificates.
    @ivar caKey: The private key of that authority.
    @ivar serverCert: The server certificate (C{CN=localhost}; SANs
        C{DNS:localhost}, C{IP:127.0.0.1}, C{IP:::1}).
    @ivar serverKey: The server's private key.
    @ivar serverCombined: The server's private key followed by its certificate
        in one file, as Twisted's C{ssl:} endpoint C{privateKey=} wants it.
    @ivar clientCert: The client certificate (C{CN=client}).
    @ivar clientKey: The client's private key.
    @ivar clientCombined: The client's private key followed by its
        certificate in one file.
    @ivar wrongCA: The certificate of a second authority that signed nothing
        of the above.
    @ivar wrongHostCert: A server certificate signed by C{caCert} for
        C{CN=wrong.example} with the single SAN C{DNS:wrong.example}.
    @ivar wrongHostKey: The private key of C{wrongHostCert}.
    @ivar wrongHostCombined: C{wrongHostKey} followed by C{wrongHostCert}.
    """

    directory: str
    caCert: str
    caKey: str
    serverCert: str
    serverKey: str
    serverCombined: str
    clientCert: str
    clientKey: str
    clientCombined: str
    wrongCA: str
    wrongHostCert: str
    wrongHostKey: str
    wrongHostCombined: str


def _name(commonName: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "amqptx tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, commonName),
        ]
    )


def _newKey() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _validity() -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.timezone.utc)
    return now - datetime.timedelta(days=1), now + datetime.timedelta(days=3650)


def _makeCA(commonName: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _newKey()
    notBefore, notAfter = _validity()
    name = _name(commonName)
    publicKey = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(publicKey)
        .serial_number(x509.random_serial_number())
        .not_valid_before(notBefore)
        .not_valid_after(notAfter)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(publicKey), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _makeLeaf(
    commonName: str,
    sans: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    caCert: x509.Certificate,
    caKey: ec.EllipticCurvePrivateKey,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _newKey()
    notBefore, notAfter = _validity()
    publicKey = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(commonName))
        .issuer_name(caCert.subject)
        .public_key(publicKey)
        .serial_number(x509.random_serial_number())
        .not_valid_before(notBefore)
        .not_valid_after(notAfter)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(publicKey), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(caKey.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(sans), critical=False
        )
    return builder.sign(caKey, hashes.SHA256()), key


def _certPEM(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _keyPEM(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(directory: str, name: str, data: bytes, private: bool = False) -> str:
    path = os.path.join(directory, name)
    fd = os.open(
        path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644
    )
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def makePKI(directory: FilePath[Any] | str) -> PKI:
    """
    Generate a fresh test PKI and write it into C{directory}.

    @param directory: An existing directory (or one to be created) to write
        the PEM files into.  Existing files of the same names are replaced.
    @return: The paths of the files written.
    """
    if isinstance(directory, FilePath):
        path = directory.path
        dirname = path.decode("utf-8") if isinstance(path, bytes) else path
    else:
        dirname = directory
    os.makedirs(dirname, exist_ok=True)

    caCert, caKey = _makeCA("amqptx test CA")
    wrongCACert, _ = _makeCA("amqptx unrelated test CA")
    serverCert, serverKey = _makeLeaf(
        "localhost",
        [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
            x509.IPAddress(ipaddress.IPv6Address("::1")),
        ],
        ExtendedKeyUsageOID.SERVER_AUTH,
        caCert,
        caKey,
    )
    clientCert, clientKey = _makeLeaf(
        "client", [], ExtendedKeyUsageOID.CLIENT_AUTH, caCert, caKey
    )
    wrongCert, wrongKey = _makeLeaf(
        "wrong.example",
        [x509.DNSName("wrong.example")],
        ExtendedKeyUsageOID.SERVER_AUTH,
        caCert,
        caKey,
    )

    def pair(
        stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
    ) -> tuple[str, str, str]:
        return (
            _write(dirname, stem + ".pem", _certPEM(cert)),
            _write(dirname, stem + ".key", _keyPEM(key), private=True),
            _write(
                dirname,
                stem + "-combined.pem",
                _keyPEM(key) + _certPEM(cert),
                private=True,
            ),
        )

    serverPaths = pair("server", serverCert, serverKey)
    clientPaths = pair("client", clientCert, clientKey)
    wrongPaths = pair("wronghost", wrongCert, wrongKey)
    return PKI(
        directory=dirname,
        caCert=_write(dirname, "ca.pem", _certPEM(caCert)),
        caKey=_write(dirname, "ca.key", _keyPEM(caKey), private=True),
        serverCert=serverPaths[0],
        serverKey=serverPaths[1],
        serverCombined=serverPaths[2],
        clientCert=clientPaths[0],
        clientKey=clientPaths[1],
        clientCombined=clientPaths[2],
        wrongCA=_write(dirname, "wrong-ca.pem", _certPEM(wrongCACert)),
        wrongHostCert=wrongPaths[0],
        wrongHostKey=wrongPaths[1],
        wrongHostCombined=wrongPaths[2],
    )


_shared: PKI | None = None


def sharedPKI() -> PKI:
    """
    Return a test PKI shared by the whole process.

    It is generated on first use in a new temporary directory which is
    removed when the process exits.

    @return: The shared PKI.
    """
    global _shared
    if _shared is None:
        directory = tempfile.mkdtemp(prefix="amqptx-pki-")
        atexit.register(shutil.rmtree, directory, True)
        _shared = makePKI(directory)
    return _shared
