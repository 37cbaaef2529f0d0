# -*- test-case-name: tests.test_tap_web -*-
"""
Tests for the C{--web} option of C{twistd amqp-listen} (L{amqptx._tap}):
the status page's endpoint, its authentication, and its services.
"""

from __future__ import annotations

import json

from twisted.application.service import IServiceCollection, MultiService
from twisted.cred.checkers import AllowAnonymousAccess
from twisted.cred.credentials import UsernamePassword
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python import usage
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from amqptx._tap import AMQPServerService, Options, makeService
from amqptx.broker import StoreService
from amqptx.broker._status import StatusSampler
from amqptx.broker._web import StatusWebService
from tests.test_status import get


def _options(*arguments: str) -> Options:
    options = Options()
    options.parseOptions(list(arguments))
    return options


class WebOptionTests(SynchronousTestCase):
    """
    Parsing C{--web}.
    """

    def test_default(self) -> None:
        """
        Without C{--web}, there is no status page.
        """
        options = _options()
        self.assertIsNone(options["web"])
        self.assertIsNone(options["webEndpoint"])
        self.assertEqual(options.webCheckers(), ())

    def test_endpoint(self) -> None:
        """
        C{--web} takes a server endpoint description.
        """
        options = _options("--web", "tcp:8080:interface=127.0.0.1")
        endpoint = options["webEndpoint"]
        self.assertIsInstance(endpoint, TCP4ServerEndpoint)
        self.assertEqual(endpoint._port, 8080)
        self.assertEqual(endpoint._interface, "127.0.0.1")

    def test_badEndpoint(self) -> None:
        """
        A malformed endpoint is a usage error naming it.
        """
        for description in ("tcp:notaport", "nosuchkind:1", "tcp:80:colour=red"):
            error = self.assertRaises(usage.UsageError, _options, "--web", description)
            self.assertIn("--web", str(error))
            self.assertIn(description, str(error))

    def test_notAMQP(self) -> None:
        """
        An AMQP endpoint cannot serve the page.
        """
        error = self.assertRaises(usage.UsageError, _options, "--web", "amqp:8080")
        self.assertIn("HTTP", str(error))

    def test_checkers(self) -> None:
        """
        With C{--auth}, the page's users are checked by the same checkers,
        with user names and passwords as bytes (as HTTP Basic gives them).
        """
        options = _options("--web", "tcp:0", "--auth", "memory:alice:secret")
        [checker] = options.webCheckers()
        d = checker.requestAvatarId(UsernamePassword(b"alice", b"secret"))
        self.assertEqual(self.successResultOf(d), b"alice")

    def test_anonymousNeverOpensThePage(self) -> None:
        """
        C{--allow-anonymous} lets AMQP clients in anonymously, not the
        page's users.
        """
        options = _options(
            "--web", "tcp:0", "--auth", "memory:alice:secret", "--allow-anonymous"
        )
        checkers = options.webCheckers()
        self.assertEqual(len(checkers), 1)
        self.assertFalse(any(isinstance(c, AllowAnonymousAccess) for c in checkers))

    def test_anonymousOnly(self) -> None:
        """
        C{--auth anonymous} alone leaves the page no way to check its users:
        a usage error, rather than an open page or a locked one.
        """
        error = self.assertRaises(
            usage.UsageError, _options, "--web", "tcp:0", "--auth", "anonymous"
        )
        self.assertIn("--web", str(error))
        self.assertIn("anonymous", str(error))


class WebServiceTests(SynchronousTestCase):
    """
    L{makeService} with C{--web}.
    """

    def children(self, service: object) -> list[object]:
        """
        @return: the services of a service collection, in order.
        """
        assert IServiceCollection.providedBy(service)
        return list(service)

    def test_services(self) -> None:
        """
        The server comes first (its ports open first), then the sampler of
        the rates, then the page.
        """
        service = makeService(_options("--web", "tcp:8080"))
        self.assertIsInstance(service, MultiService)
        server, sampler, web = self.children(service)
        self.assertIsInstance(server, AMQPServerService)
        self.assertIsInstance(sampler, StatusSampler)
        self.assertIsInstance(web, StatusWebService)
        assert isinstance(web, StatusWebService)
        self.assertIsInstance(web._endpoint, TCP4ServerEndpoint)

    def test_withStore(self) -> None:
        """
        With a store, the store's service (which runs the server) comes
        first.
        """
        path = FilePath(self.mktemp())
        service = makeService(_options("--web", "tcp:8080", "--store", path.path))
        store, sampler, web = self.children(service)
        self.assertIsInstance(store, StoreService)
        self.assertIsInstance(sampler, StatusSampler)
        self.assertIsInstance(web, StatusWebService)

    def test_withoutWeb(self) -> None:
        """
        Without C{--web}, the service is the server's, as before.
        """
        self.assertIsInstance(makeService(_options()), AMQPServerService)

    def site(self, *arguments: str) -> StatusWebService:
        service = makeService(_options("--web", "tcp:8080", *arguments))
        web = self.children(service)[-1]
        assert isinstance(web, StatusWebService)
        return web

    def test_open(self) -> None:
        """
        Without C{--auth}, the page is open to everyone.
        """
        status, _, body = get(self.site()._site, "/api/status")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["connections"], [])

    def test_auth(self) -> None:
        """
        With C{--auth}, the page asks for the broker's users' credentials:
        none gets a 401, the right ones the status; so does
        C{--allow-anonymous}, which is for AMQP clients only.
        """
        for extra in ((), ("--allow-anonymous",)):
            site = self.site("--auth", "memory:alice:secret", *extra)._site
            status, headers, _ = get(site, "/api/status")
            self.assertEqual(status, 401)
            self.assertIn("basic", headers["www-authenticate"])
            status, _, _ = get(site, "/api/status", "alice", "wrong")
            self.assertEqual(status, 401)
            status, _, body = get(site, "/api/status", "alice", "secret")
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(body)["queues"], [])

    def test_cleartextWarning(self) -> None:
        """
        With C{--auth}, a status page without TLS makes the server warn that
        its users' passwords travel in clear; without C{--auth}, there are
        no passwords to warn about.
        """
        observer = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )
        self.site()
        self.assertFalse([e for e in observer if "in clear" in e.get("log_format", "")])
        self.site("--auth", "memory:alice:secret")
        [warning] = [e for e in observer if "in clear" in e.get("log_format", "")]
        self.assertEqual(warning["log_level"], LogLevel.warn)
        self.assertEqual(warning["endpoint"], "tcp:8080")
