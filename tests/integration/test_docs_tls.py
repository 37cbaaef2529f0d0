# -*- test-case-name: tests.integration.test_docs_tls -*-
"""
The TLS and SASL how-to (C{docs/tls-sasl.rst}) does what it says: its
C{openssl} script makes certificates that work, and its example programs,
run against C{twistd amqp-listen} started with the page's options, print
what the page shows.
"""

from __future__ import annotations

import os
import sys

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from twisted.internet.defer import Deferred
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.filepath import FilePath

from tests.integration._peers import REPOSITORY_ROOT, checkoutEnvironment
from tests.integration._twistd import Twistd, TwistdTestCase

_EXAMPLES = FilePath(REPOSITORY_ROOT).child("docs").child("examples")

#: The server options of the page, with the port 0 for a free one.
TLS_LISTEN = (
    "amqps:0:interface=127.0.0.1:privateKey=certs/server.key:certKey=certs/server.pem"
)
CLIENT_CERT_LISTEN = TLS_LISTEN + ":caCerts=certs/ca.pem"
USERS = "memory:alice:secret"


class TLSHowToTests(TwistdTestCase):
    """
    C{docs/examples/make_certs.sh}, then the TLS examples against
    C{twistd amqp-listen}.
    """

    timeout = 120

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        super().setUp()
        directory = FilePath(self.mktemp())
        directory.makedirs()
        self.certs = directory
        return Deferred.fromCoroutine(self._makeCertificates())

    async def _makeCertificates(self) -> None:
        """
        Run the page's script, in a new directory.
        """
        out, err, code = await getProcessOutputAndValue(
            "/bin/sh",
            [_EXAMPLES.child("make_certs.sh").path, self.certs.path],
            env=dict(os.environ),
        )
        self.assertEqual(code, 0, (out + err).decode())

    def path(self, text: str) -> str:
        """
        @param text: options as the page writes them, with files in
            C{certs/}.
        @return: the same, with the files in this test's directory.
        """
        return text.replace("certs/", self.certs.path + "/")

    async def server(self, *options: str) -> int:
        """
        Run C{twistd -n amqp-listen} with the page's options.

        @param options: the options, files in C{certs/}.
        @return: the port it listens on.
        """
        twistd = self.spawnTwistd(*[self.path(option) for option in options])
        self.twistd: Twistd = twistd
        return await twistd.listening

    async def runExample(self, name: str, *arguments: str) -> list[str]:
        """
        Run an example program.

        @param name: its file name.
        @param arguments: its arguments, files in C{certs/}.
        @return: the lines it printed; it must have succeeded.
        """
        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            [_EXAMPLES.child(name).path, *[self.path(a) for a in arguments]],
            env=checkoutEnvironment(),
            path=REPOSITORY_ROOT,
        )
        self.assertEqual(code, 0, err.decode())
        lines: list[str] = out.decode().splitlines()
        return lines

    async def serverLog(self) -> str:
        """
        Stop the server, and read its log to the end.

        @return: the log.
        """
        await self.twistd.signal("TERM")
        return self.twistd.output()

    def load(self, name: str) -> x509.Certificate:
        """
        @param name: a certificate file the script made.
        @return: the certificate.
        """
        return x509.load_pem_x509_certificate(self.certs.child(name).getContent())

    def test_certificates(self) -> None:
        """
        The script makes a CA, a server certificate for C{localhost},
        C{127.0.0.1} and C{::1} and a client certificate, both signed by the
        CA, with private keys only their owner may read.
        """
        ca = self.load("ca.pem")
        server = self.load("server.pem")
        client = self.load("client.pem")
        self.assertTrue(
            ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        )
        server.verify_directly_issued_by(ca)
        client.verify_directly_issued_by(ca)
        names = server.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
        self.assertEqual(names.get_values_for_type(x509.DNSName), ["localhost"])
        self.assertEqual(
            [str(a) for a in names.get_values_for_type(x509.IPAddress)],
            ["127.0.0.1", "::1"],
        )
        self.assertEqual(client.subject.rfc4514_string(), "CN=sensor-1,O=Example")
        usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        self.assertEqual(list(usage.value), [ExtendedKeyUsageOID.CLIENT_AUTH])
        for key in ("ca.key", "server.key", "client.key"):
            self.assertEqual(os.stat(self.certs.child(key).path).st_mode & 0o777, 0o600)
        self.assertEqual(
            sorted(self.certs.listdir()),
            sorted(
                [
                    "ca.key",
                    "ca.pem",
                    "ca.srl",
                    "client.key",
                    "client.pem",
                    "server.key",
                    "server.pem",
                ]
            ),
        )

    async def test_anonymousOverTLS(self) -> None:
        """
        A client that trusts the CA connects over TLS by the server's name
        or address; without the CA, or asking for a name the certificate
        does not have, the handshake fails with L{amqptx.TLSError}.
        """
        port = await self.server("--listen", TLS_LISTEN)
        sent = ["sent: Outcome.ACCEPTED", "received: Hello over TLS"]
        for host in ("localhost", "127.0.0.1"):
            self.assertEqual(
                await self.runExample(
                    "tls_client.py", f"amqps:{host}:{port}:trustRoots=certs/ca.pem"
                ),
                sent,
            )
        self.assertEqual(
            await self.runExample(
                "tls_client.py", f"amqps://localhost:{port}:trustRoots=certs/ca.pem"
            ),
            sent,
        )
        [untrusted] = await self.runExample("tls_client.py", f"amqps:localhost:{port}")
        self.assertTrue(untrusted.startswith("TLS failed: "), untrusted)
        self.assertIn("certificate verify failed", untrusted)
        [wrongName] = await self.runExample(
            "tls_client.py",
            f"amqps:127.0.0.1:{port}:trustRoots=certs/ca.pem:sni=broker.example.com",
        )
        self.assertTrue(wrongName.startswith("TLS failed: "), wrongName)
        self.assertIn("DNSMismatch", wrongName)
        self.assertIn("broker.example.com", wrongName)

    async def test_plain(self) -> None:
        """
        With C{--auth}, a client logs in with PLAIN over TLS, from an
        endpoint string or a URL; a wrong password, or none, is refused; a
        client that finds the wrong name in the server's certificate does
        not send its password.
        """
        port = await self.server("--listen", TLS_LISTEN, "--auth", USERS)
        endpoint = f"amqps:localhost:{port}:trustRoots=certs/ca.pem"
        self.assertEqual(
            await self.runExample(
                "tls_client.py", endpoint + ":user=alice:password=secret"
            ),
            ["sent: Outcome.ACCEPTED", "received: Hello over TLS"],
        )
        self.assertEqual(
            await self.runExample(
                "tls_url.py", f"amqps://alice:secret@localhost:{port}", "certs/ca.pem"
            ),
            ["sent: Outcome.ACCEPTED", "received: Hello from a URL"],
        )
        refused = ["login refused: amqp:unauthorized-access"]
        self.assertEqual(
            await self.runExample(
                "tls_client.py", endpoint + ":user=alice:password=wrong"
            ),
            refused,
        )
        self.assertEqual(await self.runExample("tls_client.py", endpoint), refused)
        [wrongName] = await self.runExample(
            "tls_client.py",
            f"amqps:127.0.0.1:{port}:trustRoots=certs/ca.pem:sni=broker.example.com"
            ":user=alice:password=secret",
        )
        self.assertTrue(wrongName.startswith("TLS failed: "), wrongName)
        log = await self.serverLog()
        # Two logins, one refused (the wrong password); the client that
        # found the wrong name never sent its password.
        self.assertEqual(log.count("SASL PLAIN login of alice from 127.0.0.1:"), 3)
        self.assertEqual(log.count(" refused"), 1)
        self.assertNotIn("wrong", log)

    async def test_plainInClear(self) -> None:
        """
        Over C{amqp:}, a client refuses to send a password unless told to
        with C{allowInsecurePlain=yes}, and the server offers PLAIN only with
        C{--allow-insecure-plain}.
        """
        port = await self.server(
            "--listen",
            "amqp:0:interface=127.0.0.1",
            "--auth",
            USERS,
            "--allow-insecure-plain",
        )
        endpoint = f"amqp:localhost:{port}:user=alice:password=secret"
        self.assertEqual(
            await self.runExample("tls_client.py", endpoint),
            [
                "not even tried: refusing to send a password in clear over amqp "
                "(no TLS): use amqps, or allow it explicitly with "
                "allowInsecurePlain"
            ],
        )
        self.assertEqual(
            await self.runExample(
                "tls_client.py", endpoint + ":allowInsecurePlain=yes"
            ),
            ["sent: Outcome.ACCEPTED", "received: Hello over TLS"],
        )

    async def test_external(self) -> None:
        """
        With C{caCerts=}, the server requires a client certificate signed by
        the CA, and the client logs in with EXTERNAL as its subject, from an
        endpoint string or with C{amqptx.connect}; a user with a password
        logs in with PLAIN, but still needs a certificate.
        """
        port = await self.server("--listen", CLIENT_CERT_LISTEN, "--auth", USERS)
        endpoint = f"amqps:localhost:{port}:trustRoots=certs/ca.pem"
        certificate = ":certificate=certs/client.pem:privateKey=certs/client.key"
        self.assertEqual(
            await self.runExample("tls_client.py", endpoint + certificate),
            ["sent: Outcome.ACCEPTED", "received: Hello over TLS"],
        )
        self.assertEqual(
            await self.runExample(
                "tls_url.py",
                f"amqps://localhost:{port}",
                "certs/ca.pem",
                "certs/client.pem",
                "certs/client.key",
            ),
            ["sent: Outcome.ACCEPTED", "received: Hello from a URL"],
        )
        self.assertEqual(
            await self.runExample(
                "tls_client.py", endpoint + certificate + ":user=alice:password=secret"
            ),
            ["sent: Outcome.ACCEPTED", "received: Hello over TLS"],
        )
        [noCertificate] = await self.runExample(
            "tls_client.py", endpoint + ":user=alice:password=secret"
        )
        self.assertTrue(noCertificate.startswith("TLS failed: "), noCertificate)
        self.assertIn("certificate required", noCertificate)
        log = await self.serverLog()
        self.assertEqual(
            log.count("SASL EXTERNAL login of CN=sensor-1,O=Example from 127.0.0.1:"),
            2,
        )
        self.assertIn("SASL PLAIN login of alice from 127.0.0.1:", log)

    async def test_externalWithoutAuth(self) -> None:
        """
        Without C{--auth}, a server with C{caCerts=} requires certificates,
        and offers EXTERNAL (to clients that presented one) and ANONYMOUS.
        """
        port = await self.server("--listen", CLIENT_CERT_LISTEN)
        endpoint = (
            f"amqps:localhost:{port}:trustRoots=certs/ca.pem"
            ":certificate=certs/client.pem:privateKey=certs/client.key"
        )
        sent = ["sent: Outcome.ACCEPTED", "received: Hello over TLS"]
        self.assertEqual(await self.runExample("tls_client.py", endpoint), sent)
        self.assertEqual(
            await self.runExample("tls_client.py", endpoint + ":mechanisms=ANONYMOUS"),
            sent,
        )
        log = await self.serverLog()
        self.assertIn("SASL EXTERNAL login of CN=sensor-1,O=Example from", log)
        self.assertIn("SASL ANONYMOUS login of anonymous from", log)

    async def test_externalAnonymousAuth(self) -> None:
        """
        With C{--auth anonymous}, a server with C{caCerts=} offers EXTERNAL
        and ANONYMOUS, not PLAIN.
        """
        port = await self.server("--listen", CLIENT_CERT_LISTEN, "--auth", "anonymous")
        endpoint = (
            f"amqps:localhost:{port}:trustRoots=certs/ca.pem"
            ":certificate=certs/client.pem:privateKey=certs/client.key"
        )
        sent = ["sent: Outcome.ACCEPTED", "received: Hello over TLS"]
        self.assertEqual(await self.runExample("tls_client.py", endpoint), sent)
        self.assertEqual(
            await self.runExample("tls_client.py", endpoint + ":mechanisms=ANONYMOUS"),
            sent,
        )
        self.assertEqual(
            await self.runExample(
                "tls_client.py", endpoint + ":user=alice:password=secret"
            ),
            ["login refused: amqp:unauthorized-access"],
        )
        log = await self.serverLog()
        self.assertIn("SASL EXTERNAL login of CN=sensor-1,O=Example from", log)
        self.assertIn("SASL ANONYMOUS login of anonymous from", log)
