# -*- test-case-name: tests.test_tap -*-
"""
Tests for L{amqptx._tap}: the options and service of C{twistd amqp-listen}.
"""

from __future__ import annotations

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from amqptx import AMQPServerEndpoint
from amqptx._tap import DEFAULT_LISTEN, Options, makeService


class OptionsTests(SynchronousTestCase):
    """
    Command-line options.
    """

    def test_default(self) -> None:
        """
        Without options the server listens on 127.0.0.1:5672.
        """
        options = Options()
        options.parseOptions([])
        self.assertEqual(options["listen"], [DEFAULT_LISTEN])
        [endpoint] = options["endpoints"]
        self.assertIsInstance(endpoint, AMQPServerEndpoint)
        self.assertIn("5672", repr(endpoint))
        self.assertIn("127.0.0.1", repr(endpoint))

    def test_repeatable(self) -> None:
        """
        C{--listen} can be given several times.
        """
        options = Options()
        options.parseOptions(
            ["--listen", "amqp:5000", "-l", r"amqp:5001:interface=\:\:1"]
        )
        self.assertEqual(len(options["endpoints"]), 2)

    def test_notAMQP(self) -> None:
        """
        An endpoint that is not amqp: or amqps: is a usage error.
        """
        options = Options()
        error = self.assertRaises(
            usage.UsageError, options.parseOptions, ["--listen", "tcp:5000"]
        )
        self.assertIn("tcp:5000", str(error))

    def test_badEndpoint(self) -> None:
        """
        A malformed endpoint string is a usage error naming the problem.
        """
        options = Options()
        error = self.assertRaises(
            usage.UsageError, options.parseOptions, ["--listen", "amqp:notaport"]
        )
        self.assertIn("notaport", str(error))
        error = self.assertRaises(
            usage.UsageError,
            Options().parseOptions,
            ["--listen", "amqp:5000:colour=red"],
        )
        self.assertIn("colour", str(error))


class ServiceTests(SynchronousTestCase):
    """
    The service.
    """

    def test_onePerEndpoint(self) -> None:
        """
        The service listens on every endpoint given.
        """
        options = Options()
        options.parseOptions(["--listen", "amqp:5000", "--listen", "amqp:5001"])
        service = makeService(options)
        self.assertTrue(IService.providedBy(service))
        assert isinstance(service, MultiService)
        children = list(service)
        self.assertEqual(len(children), 2)
        for child in children:
            self.assertIsInstance(child, StreamServerEndpointService)
