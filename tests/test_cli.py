# -*- test-case-name: tests.test_cli -*-
"""
Tests for L{amqptx._cli}, the C{amqptx} command-line tool: its options, the
messages it builds, what it prints of messages and failures.  No network:
the commands themselves run in L{tests.integration.test_cli}.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from proton import Message, symbol, ulong
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet import error as neterror
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.ssl import PrivateCertificate
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from amqptx import (
    AMQPConnectionLost,
    AMQPServerEndpoint,
    AuthenticationFailed,
    ConnectionClosed,
    FailoverExhausted,
    LinkDetached,
    MessageModified,
    MessageRejected,
    MessageReleased,
    OpenRefused,
    ProtocolError,
    RequestTimedOut,
    SessionEnded,
    TLSError,
    parseURL,
)
from amqptx import _cli as cli
from amqptx._cli import (
    EXIT_AUTHENTICATION,
    EXIT_CONNECTION,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    CommandFailed,
    ConnectionPlan,
    Console,
    MessageTemplate,
    PingOptions,
    Progress,
    ReceiveOptions,
    RequestOptions,
    SendOptions,
    describeConnectFailure,
    describeFailure,
    exitStatus,
    jsonable,
    messageLine,
    messageRecord,
    outcomeText,
    parseCommandLine,
)
from amqptx._sasl import SASLConfig
from amqptx.broker import Broker, BrokerConfig, Permissions
from amqptx.testing import completeConnection
from tests._certs import sharedPKI

_SECRET = "s3cr%C3%A9t"
_DECODED = "s3crét"


def _command(*arguments: str) -> Any:
    """
    Parse a command line.

    @return: the command's options.
    """
    return parseCommandLine(list(arguments)).subOptions


def _usageError(test: SynchronousTestCase, *arguments: str) -> str:
    """
    @return: the message of the L{usage.UsageError} the arguments give.
    """
    error = test.assertRaises(usage.UsageError, parseCommandLine, list(arguments))
    return str(error)


def _roundTrip(message: Message) -> Message:
    """
    @return: the message, encoded and decoded as a receiver gets it.
    """
    from amqptx._engine import decodeMessage

    return decodeMessage(message.encode())


class CommandLineTests(SynchronousTestCase):
    """
    The commands, the URL and the options common to all commands.
    """

    def test_commands(self) -> None:
        """
        Each command has its options class.
        """
        for name, kind in [
            ("send", SendOptions),
            ("receive", ReceiveOptions),
            ("request", RequestOptions),
            ("ping", PingOptions),
        ]:
            arguments = [name, "amqp://h/q"]
            if name in ("send", "request"):
                arguments += ["-m", "x"]
            options = parseCommandLine(arguments)
            self.assertEqual(options.subCommand, name)
            self.assertIsInstance(options.subOptions, kind)

    def test_noCommand(self) -> None:
        """
        Without a command, the error says which there are.
        """
        self.assertIn("send, receive, request or ping", _usageError(self))

    def test_unknownCommand(self) -> None:
        """
        An unknown command is a usage error.
        """
        self.assertIn("frob", _usageError(self, "frob", "amqp://h/q"))

    def test_addressFromPath(self) -> None:
        """
        The URL's path is the address; the plan's server is the URL without
        it.
        """
        plan = _command("receive", "amqp://example.com:5673/orders").plan
        self.assertEqual(plan.address, "orders")
        self.assertEqual(plan.server, "amqp://example.com:5673")
        self.assertEqual(
            _command("receive", "amqp://h//queue/x").plan.address, "/queue/x"
        )

    def test_optionsAfterURL(self) -> None:
        """
        Options may come before or after the URL, and between each other.
        """
        before = _command("send", "-m", "hi", "--count=3", "amqp://h/q")
        after = _command("send", "amqp://h/q", "-m", "hi", "--count", "3", "-q")
        for options in (before, after):
            self.assertEqual(options["count"], 3)
            self.assertEqual(options.template.body, "hi")
            self.assertEqual(options.plan.address, "q")
        self.assertTrue(after["quiet"])

    def test_optionsBeforeCommand(self) -> None:
        """
        A command's options may come before its name.
        """
        options = parseCommandLine(
            ["-v", "--connect-timeout", "3", "receive", "amqp://h/q", "-c", "2"]
        )
        self.assertEqual(options.subCommand, "receive")
        plan = options.subOptions.plan
        self.assertEqual((plan.verbose, plan.connectTimeout), (True, 3.0))
        self.assertEqual(options.subOptions["count"], 2)

    def test_doubleDash(self) -> None:
        """
        After C{--}, an argument is the URL even if it looks like an option.
        """
        message = _usageError(self, "receive", "--", "-x")
        self.assertIn("bad URL", message)

    def test_oneURL(self) -> None:
        """
        A command takes exactly one URL.
        """
        self.assertIn("give one URL", _usageError(self, "receive"))
        self.assertIn(
            "give one URL", _usageError(self, "receive", "amqp://h/a", "amqp://h/b")
        )

    def test_unknownOption(self) -> None:
        """
        An unknown option is a usage error.
        """
        self.assertIn("frob", _usageError(self, "receive", "amqp://h/q", "--frob"))

    def test_badURL(self) -> None:
        """
        A URL that does not parse is a usage error, without its password.
        """
        message = _usageError(
            self, "receive", f"amqp://user:{_SECRET}@h:99999/q", "--insecure"
        )
        self.assertIn("bad URL", message)
        self.assertNotIn(_SECRET, message)
        self.assertNotIn(_DECODED, message)

    def test_addressNeeded(self) -> None:
        """
        C{send}, C{receive} and C{request} need an address; C{ping} does not.
        """
        for arguments in (
            ["send", "amqp://h", "-m", "x"],
            ["receive", "amqp://h/"],
            ["request", "amqp://h", "-m", "x"],
        ):
            self.assertIn("names no address", _usageError(self, *arguments))
        self.assertEqual(_command("ping", "amqp://h").plan.address, "")

    def test_defaults(self) -> None:
        """
        Without options: no reconnect, no logging, a 10 s connect timeout,
        cleartext passwords refused.
        """
        plan = _command("ping", "amqp://h").plan
        self.assertEqual(
            (plan.reconnect, plan.verbose, plan.connectTimeout), (False, False, 10.0)
        )
        self.assertEqual(
            plan.endpointOptions, {"allowInsecurePlain": False, "timeout": 10.0}
        )

    def test_commonFlags(self) -> None:
        """
        C{--reconnect}, C{--verbose} (C{-v}) and C{--connect-timeout}.
        """
        plan = _command(
            "ping", "amqp://h", "--reconnect", "-v", "--connect-timeout", "2.5"
        ).plan
        self.assertEqual(
            (plan.reconnect, plan.verbose, plan.connectTimeout), (True, True, 2.5)
        )
        self.assertEqual(plan.endpointOptions["timeout"], 2.5)

    def test_badConnectTimeout(self) -> None:
        """
        The connect timeout is a positive number of seconds.
        """
        for value in ("0", "-1", "soon", "nan", "inf"):
            self.assertIn(
                "--connect-timeout",
                _usageError(self, "ping", "amqp://h", "--connect-timeout", value),
            )

    def test_cleartextPassword(self) -> None:
        """
        A user over C{amqp://} needs C{--insecure}, which maps to
        C{allowInsecurePlain}.
        """
        message = _usageError(self, "ping", f"amqp://guest:{_SECRET}@h")
        self.assertIn("--insecure", message)
        self.assertNotIn(_SECRET, message)
        plan = _command("ping", f"amqp://guest:{_SECRET}@h", "--insecure").plan
        self.assertIs(plan.endpointOptions["allowInsecurePlain"], True)
        self.assertEqual(plan.secrets, (_DECODED,))
        self.assertNotIn(_DECODED, plan.server)
        self.assertEqual(_command("ping", "amqps://guest:pw@h").plan.secrets, ("pw",))

    def test_tlsOptionsNeedAMQPS(self) -> None:
        """
        C{--ca}, C{--cert}, C{--key} and C{--sni} need an C{amqps://} URL.
        """
        pki = sharedPKI()
        message = _usageError(self, "ping", "amqp://h", "--ca", pki.caCert)
        self.assertIn("--ca: need an amqps:// URL", message)
        self.assertIn("--sni", _usageError(self, "ping", "amqp://h", "--sni", "x"))

    def test_tlsFiles(self) -> None:
        """
        C{--ca} gives a trust root; C{--cert} and C{--key} a client
        certificate (the key from the certificate's file without C{--key});
        C{--sni} the name to check.
        """
        pki = sharedPKI()
        plan = _command(
            "ping",
            "amqps://h",
            "--ca",
            pki.caCert,
            "--cert",
            pki.clientCert,
            "--key",
            pki.clientKey,
            "--sni",
            "broker.example",
        ).plan
        self.assertIn("trustRoot", plan.endpointOptions)
        self.assertIsInstance(
            plan.endpointOptions["clientCertificate"], PrivateCertificate
        )
        self.assertEqual(plan.endpointOptions["sni"], "broker.example")
        combined = _command("ping", "amqps://h", "--cert", pki.clientCombined).plan
        self.assertIsInstance(
            combined.endpointOptions["clientCertificate"], PrivateCertificate
        )

    def test_tlsFileErrors(self) -> None:
        """
        A missing or wrong PEM file, or C{--key} alone, is a usage error.
        """
        pki = sharedPKI()
        self.assertIn(
            "cannot read --ca file",
            _usageError(self, "ping", "amqps://h", "--ca", "/nonexistent.pem"),
        )
        self.assertIn(
            "--key needs --cert",
            _usageError(self, "ping", "amqps://h", "--key", pki.clientKey),
        )
        self.assertIn(
            "no private key matching",
            _usageError(
                self, "ping", "amqps://h", "--cert", pki.clientCert, "--key", pki.caKey
            ),
        )

    def test_failover(self) -> None:
        """
        C{--failover} (repeatable) adds servers after the URL's, without
        paths; their passwords are secrets too.
        """
        plan = _command(
            "send",
            "amqps://u:one@h1/q",
            "-m",
            "x",
            "--failover",
            "amqps://u:two@h2:5000",
            "--failover",
            "amqps://h3/q",
        ).plan
        self.assertEqual(
            [str(url) for url in plan.servers],
            ["amqps://u:***@h1:5671", "amqps://u:***@h2:5000", "amqps://h3:5671"],
        )
        self.assertEqual(plan.secrets, ("one", "two"))
        self.assertEqual(plan.address, "q")
        self.assertEqual(_command("ping", "amqp://h").plan.failover, ())

    def test_failoverErrors(self) -> None:
        """
        A bad C{--failover} URL, one with another address, one over
        C{amqp://} with TLS files or with a password without C{--insecure}:
        usage errors.
        """
        pki = sharedPKI()
        for arguments, expected in [
            (["--failover", "amqp://h:0"], "bad --failover URL"),
            (["--failover", "amqp://h2/other"], "give the server only"),
            (["--failover", "amqp://u:p@h2"], "refusing to send a password"),
        ]:
            self.assertIn(
                expected, _usageError(self, "receive", "amqp://h/q", *arguments)
            )
        message = _usageError(
            self, "ping", "amqps://h", "--ca", pki.caCert, "--failover", "amqp://h2"
        )
        self.assertIn("--ca: need an amqps:// URL (amqp://h2:5672 is not)", message)


class SendOptionsTests(SynchronousTestCase):
    """
    The options of C{send} and C{request}.
    """

    def test_send(self) -> None:
        """
        Defaults: one message, outcomes waited for, a line per outcome.
        """
        options = _command("send", "amqp://h/q", "-m", "hello")
        self.assertEqual(
            (options["count"], options["presettled"], options["quiet"]), (1, 0, 0)
        )
        self.assertEqual(options.template, MessageTemplate("hello"))

    def test_count(self) -> None:
        """
        C{--count} is a whole number, at least 1.
        """
        self.assertEqual(
            _command("send", "amqp://h/q", "-m", "x", "-c", "7")["count"], 7
        )
        for value in ("0", "-2", "1.5", "many"):
            self.assertIn(
                "--count",
                _usageError(self, "send", "amqp://h/q", "-m", "x", "--count", value),
            )

    def test_body(self) -> None:
        """
        The body comes from C{-m} or C{--file}, exactly one of them.
        """
        self.assertIn("give the body", _usageError(self, "send", "amqp://h/q"))
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"\x00\xffbytes")
        self.assertIn(
            "not both",
            _usageError(self, "send", "amqp://h/q", "-m", "x", "--file", path),
        )
        options = _command("send", "amqp://h/q", "--file", path)
        self.assertEqual(options.template.body, b"\x00\xffbytes")
        message = _usageError(self, "send", "amqp://h/q", "--file", path + ".missing")
        self.assertIn("cannot read --file", message)

    def test_properties(self) -> None:
        """
        C{--property} takes the known keys (in any case), checked;
        C{--header} any key, text values; both are repeatable.
        """
        options = _command(
            "send",
            "amqp://h/q",
            "-m",
            "x",
            "--property",
            "Subject=s",
            "-p",
            "ttl=1.5",
            "-p",
            "priority=9",
            "-p",
            "message-id=id=1",
            "--header",
            "colour=blue",
            "-H",
            "empty=",
            "--durable",
        )
        self.assertEqual(
            options.template,
            MessageTemplate(
                "x",
                (
                    ("subject", "s"),
                    ("ttl", 1.5),
                    ("priority", 9),
                    ("message-id", "id=1"),
                ),
                (("colour", "blue"), ("empty", "")),
                True,
            ),
        )

    def test_badProperties(self) -> None:
        """
        An unknown key, a bad value, or no C{=} is a usage error.
        """
        for arguments, expected in [
            (["-p", "colour=blue"], "unknown; use one of content-encoding"),
            (["-p", "ttl=soon"], "ttl"),
            (["-p", "ttl=0"], "ttl"),
            (["-p", "ttl=1e12"], "too long"),
            (["-p", "priority=256"], "0-255"),
            (["-p", "priority=high"], "priority"),
            (["-p", "subject"], "use KEY=VALUE"),
            (["-H", "=x"], "use KEY=VALUE"),
        ]:
            message = _usageError(self, "send", "amqp://h/q", "-m", "x", *arguments)
            self.assertIn(expected, message)

    def test_request(self) -> None:
        """
        C{request} waits 10 seconds for the reply by default, C{--timeout}
        otherwise; C{--json} prints the reply as JSON.
        """
        options = _command("request", "amqp://h/service", "-m", "ping")
        self.assertEqual((options["timeout"], options["json"]), (10.0, 0))
        options = _command("request", "amqp://h/s", "-m", "p", "-t", "0.5", "--json")
        self.assertEqual((options["timeout"], options["json"]), (0.5, 1))
        self.assertIn(
            "--timeout",
            _usageError(self, "request", "amqp://h/s", "-m", "p", "--timeout", "0"),
        )


class ReceiveOptionsTests(SynchronousTestCase):
    """
    The options of C{receive}.
    """

    def test_defaults(self) -> None:
        """
        One message, no timeout, text output, accepted.
        """
        options = _command("receive", "amqp://h/q")
        self.assertEqual(
            (options["count"], options["timeout"], options["json"], options["ack"]),
            (1, None, 0, "accept"),
        )

    def test_options(self) -> None:
        """
        C{--count} (0: no limit), C{--timeout}, C{--json}, C{--ack}.
        """
        options = _command(
            "receive", "amqp://h/q", "-c", "0", "-t", "2", "-j", "--ack", "RELEASE"
        )
        self.assertEqual(
            (options["count"], options["timeout"], options["json"], options["ack"]),
            (0, 2.0, 1, "release"),
        )

    def test_badOptions(self) -> None:
        """
        A negative count, a bad timeout, an unknown settlement.
        """
        for arguments, expected in [
            (["--count", "-1"], "--count"),
            (["--timeout", "never"], "--timeout"),
            (["--ack", "modify"], "accept, reject or release"),
        ]:
            self.assertIn(
                expected, _usageError(self, "receive", "amqp://h/q", *arguments)
            )


class MessageTemplateTests(SynchronousTestCase):
    """
    L{MessageTemplate.build}.
    """

    def test_text(self) -> None:
        """
        Text goes as an AMQP string; C{{n}} is the message's number, in the
        body, the text properties and the headers.
        """
        template = MessageTemplate(
            "hello {n}, {n}",
            (("message-id", "m-{n}"), ("subject", "{n}"), ("priority", 7)),
            (("seq", "{n}"),),
        )
        message = _roundTrip(template.build(12))
        self.assertEqual(message.body, "hello 12, 12")
        self.assertEqual(message.id, "m-12")
        self.assertEqual(message.subject, "12")
        self.assertEqual(message.priority, 7)
        self.assertEqual(message.properties, {"seq": "12"})
        self.assertFalse(message.durable)

    def test_bytes(self) -> None:
        """
        Bytes go as a data section, as they are ({n} included).
        """
        message = MessageTemplate(b"\xff{n}", durable=True).build(3)
        self.assertTrue(message.inferred)
        decoded = _roundTrip(message)
        self.assertEqual(decoded.body, b"\xff{n}")
        self.assertTrue(decoded.durable)

    def test_allProperties(self) -> None:
        """
        Every key of C{--property} sets its message field.
        """
        options = _command(
            "send",
            "amqp://h/q",
            "-m",
            "x",
            *[
                "-p",
                "content-type=text/plain",
                "-p",
                "content-encoding=gzip",
                "-p",
                "correlation-id=c",
                "-p",
                "group-id=g",
                "-p",
                "message-id=m",
                "-p",
                "priority=0",
                "-p",
                "reply-to=r",
                "-p",
                "subject=s",
                "-p",
                "ttl=2",
            ],
        )
        message = _roundTrip(options.template.build())
        self.assertEqual(
            (
                message.content_type,
                message.content_encoding,
                message.correlation_id,
                message.group_id,
                message.id,
                message.priority,
                message.reply_to,
                message.subject,
                message.ttl,
            ),
            ("text/plain", "gzip", "c", "g", "m", 0, "r", "s", 2.0),
        )


class OutputTests(SynchronousTestCase):
    """
    What C{receive} and C{request} print of a message.
    """

    def test_lines(self) -> None:
        """
        Text in UTF-8, bytes as they are, nothing for no body, other values as
        JSON.
        """
        self.assertEqual(messageLine(Message(body="é"), False), "é".encode())
        self.assertEqual(messageLine(Message(body=b"\xff\x00"), False), b"\xff\x00")
        self.assertEqual(messageLine(Message(), False), b"")
        self.assertEqual(
            messageLine(Message(body={"a": [1, 2]}), False), b'{"a": [1, 2]}'
        )

    def test_record(self) -> None:
        """
        The JSON record: body, properties set (AMQP names), application
        properties, delivery count, durable, priority and ttl.
        """
        sent = MessageTemplate(
            "hi",
            (("subject", "s"), ("correlation-id", "c"), ("ttl", 3.0)),
            (("k", "v"),),
            durable=True,
        ).build()
        sent.delivery_count = 2
        record = json.loads(messageLine(_roundTrip(sent), True))
        self.assertEqual(
            record,
            {
                "body": "hi",
                "properties": {"subject": "s", "correlation-id": "c"},
                "application-properties": {"k": "v"},
                "delivery-count": 2,
                "durable": True,
                "priority": 4,
                "ttl": 3.0,
            },
        )

    def test_recordEmpty(self) -> None:
        """
        Nothing set: no properties (not proton's C{"None"} symbols), no ttl.
        """
        record = messageRecord(_roundTrip(Message()))
        self.assertEqual(record["properties"], {})
        self.assertIsNone(record["ttl"])
        self.assertIsNone(record["body"])

    def test_jsonable(self) -> None:
        """
        Binary that is not UTF-8 becomes base64; AMQP types become JSON's.
        """
        uuid = UUID(int=1)
        self.assertEqual(jsonable(b"\xff"), {"base64": "/w=="})
        self.assertEqual(jsonable(memoryview(b"ok")), "ok")
        self.assertEqual(
            jsonable({symbol("k"): [ulong(3), uuid, 1.5, None, True]}),
            {"k": [3, str(uuid), 1.5, None, True]},
        )
        self.assertEqual(jsonable({1: float("inf")}), {"1": "inf"})
        self.assertEqual(jsonable(object.__new__(_Odd)), "odd")

    def test_outcomes(self) -> None:
        """
        The line of each outcome other than accepted.
        """
        self.assertEqual(outcomeText(MessageRejected()), "rejected")
        self.assertEqual(
            outcomeText(MessageRejected("amqp:x", "too big")),
            "rejected (amqp:x: too big)",
        )
        self.assertEqual(outcomeText(MessageReleased(None, "r")), "released")
        self.assertEqual(
            outcomeText(MessageModified(True, False)),
            "modified (delivery-failed=True, undeliverable-here=False)",
        )


class _Odd:
    def __str__(self) -> str:
        return "odd"


class DescribeTests(SynchronousTestCase):
    """
    The one line printed for each failure.
    """

    plan = ConnectionPlan(parseURL(f"amqps://guest:{_SECRET}@broker:5671/orders"))

    def connectLine(self, failure: BaseException) -> str:
        line = describeConnectFailure(failure, self.plan)
        self.assertNotIn(_DECODED, line)
        self.assertNotIn("\n", line)
        return line

    def test_connectFailures(self) -> None:
        """
        Refused, unknown host, timeout, TLS, authentication, open refused,
        lost, protocol error: each says so, with the server (password
        masked).
        """
        server = "amqps://guest:***@broker:5671"
        cases: list[tuple[BaseException, str]] = [
            (
                neterror.ConnectionRefusedError(),
                f"cannot connect to {server}: connection refused",
            ),
            (
                neterror.DNSLookupError("x"),
                f"cannot connect to {server}: unknown host 'broker'",
            ),
            (
                neterror.TimeoutError(),
                f"cannot connect to {server}: no AMQP connection within 10 s",
            ),
            (
                TLSError("[('SSL routines', '', 'certificate verify failed')]"),
                f"TLS handshake with {server} failed: certificate verify failed "
                "(is the server's authority in --ca PEM?)",
            ),
            (
                neterror.NoRouteError(string="nowhere"),
                f"cannot connect to {server}: nowhere",
            ),
            (
                AuthenticationFailed("amqp:unauthorized-access", "no"),
                f"authentication failed at {server}: amqp:unauthorized-access: no",
            ),
            (
                OpenRefused("amqp:not-found", "no vhost"),
                f"{server} refused to open the connection: amqp:not-found: no vhost",
            ),
            (
                AMQPConnectionLost(),
                f"the connection to {server} ended before it opened",
            ),
            (
                ProtocolError("amqp:decode-error"),
                f"{server} does not speak AMQP 1.0 as expected: amqp:decode-error",
            ),
            (CancelledError(), f"gave up connecting to {server}"),
        ]
        for failure, expected in cases:
            self.assertEqual(self.connectLine(failure), expected)

    def test_hints(self) -> None:
        """
        Without a user, a failed login suggests credentials; over C{amqp://},
        a lost connection suggests TLS.
        """
        plain = ConnectionPlan(parseURL("amqp://h"))
        self.assertIn(
            "give a user and password",
            describeConnectFailure(AuthenticationFailed("amqp:x"), plain),
        )
        self.assertIn("amqps://?", describeConnectFailure(AMQPConnectionLost(), plain))
        self.assertIn(
            "another name",
            describeConnectFailure(TLSError("DNSMismatch(...)"), plain),
        )

    def test_failures(self) -> None:
        """
        Failures once connected.
        """
        server = "amqps://guest:***@broker:5671"
        cases: list[tuple[BaseException, str]] = [
            (CommandFailed("as it is"), "as it is"),
            (
                LinkDetached("amqp:not-found", "gone"),
                "the server detached the link to 'orders': amqp:not-found: gone",
            ),
            (SessionEnded(), "the server ended the session: no reason given"),
            (
                ConnectionClosed("amqp:connection:forced", "bye"),
                f"{server} closed the connection: amqp:connection:forced: bye",
            ),
            (AMQPConnectionLost(), f"lost the connection to {server}"),
            (neterror.ConnectionDone(), f"the connection to {server} was closed"),
            (MessageReleased(), "not accepted: released"),
            (CancelledError(), "cancelled"),
            (KeyError("k"), "KeyError: 'k'"),
        ]
        for failure, expected in cases:
            line = describeFailure(failure, self.plan)
            self.assertEqual(line, expected)
            self.assertNotIn(_DECODED, line)


class ConsoleTests(SynchronousTestCase):
    """
    L{Console}: results on standard output, one-line errors on standard
    error, secrets masked.
    """

    def setUp(self) -> None:
        self.out = io.BytesIO()
        self.err = io.StringIO()
        self.console = Console(self.out, self.err)

    def test_lines(self) -> None:
        """
        Lines of text or bytes end with a newline.
        """
        self.console.line("é")
        self.console.line(b"\xff")
        self.assertEqual(self.out.getvalue(), "é\n".encode() + b"\xff\n")

    def test_error(self) -> None:
        """
        An error is one line, prefixed, secrets masked.
        """
        self.console.secrets = ("hunter2",)
        self.console.error("the password hunter2\nis wrong")
        self.assertEqual(
            self.err.getvalue(), "amqptx: error: the password *** is wrong\n"
        )

    def test_silent(self) -> None:
        """
        Once silent, the console drops errors.
        """
        self.console.silent = True
        self.console.error("late")
        self.assertEqual(self.err.getvalue(), "")

    def test_closedOutput(self) -> None:
        """
        A closed standard output is a L{CommandFailed}.
        """
        self.out.close()
        failure = self.assertRaises(CommandFailed, self.console.line, "x")
        self.assertEqual(failure.message, "standard output is closed")

    def test_quietLog(self) -> None:
        """
        Without C{--verbose}, only the warnings of the reconnecting factory
        are shown, one line each.
        """
        observer = cli._observer(self.console, verbose=False)
        factory = "amqptx._reconnect.ReconnectingAMQPClientFactory"
        for namespace, level, reason in [
            (factory, LogLevel.warn, "refused"),
            (factory, LogLevel.info, "refused"),
            # Giving up: the command's error says why.
            (factory, LogLevel.error, "refused"),
            # A refused login is not tried again: the command's error says so.
            (factory, LogLevel.warn, "AuthenticationFailed(amqp:unauthorized)"),
            ("amqptx._protocol", LogLevel.error, "refused"),
        ]:
            observer(
                {
                    "log_format": "from {namespace} at {level}",
                    "namespace": namespace,
                    "level": level.name,
                    "reason": reason,
                    "log_namespace": namespace,
                    "log_level": level,
                }
            )
        self.assertEqual(
            self.err.getvalue(),
            "amqptx: warning: from amqptx._reconnect.ReconnectingAMQPClientFactory "
            "at warn\n",
        )

    def test_verboseLog(self) -> None:
        """
        With C{--verbose}, everything is logged, secrets masked.
        """
        self.console.secrets = ("hunter2",)
        observer = cli._observer(self.console, verbose=True)
        observer(
            {
                "log_format": "password {p}",
                "p": "hunter2",
                "log_level": LogLevel.debug,
                "log_namespace": "x",
                "log_time": 0.0,
            }
        )
        self.assertIn("password ***", self.err.getvalue())
        self.assertNotIn("hunter2", self.err.getvalue())


class MainTests(SynchronousTestCase):
    """
    L{cli.main} and L{cli.execute}, without a reactor.
    """

    def setUp(self) -> None:
        self.stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
        self.stderr = io.StringIO()
        self.patch(sys, "stdout", self.stdout)
        self.patch(sys, "stderr", self.stderr)

    def output(self) -> str:
        self.stdout.flush()
        buffer = self.stdout.buffer
        assert isinstance(buffer, io.BytesIO)
        return buffer.getvalue().decode()

    def test_usageError(self) -> None:
        """
        A mistake on the command line: one line, the command's help named,
        exit status 64, no password.
        """
        exit = self.assertRaises(
            SystemExit,
            cli.main,
            ["send", f"amqp://u:{_SECRET}@h:0/q", "-m", "x", "--insecure"],
        )
        self.assertEqual(exit.code, EXIT_USAGE)
        lines = self.stderr.getvalue().splitlines()
        self.assertEqual(len(lines), 1)
        self.assertTrue(lines[0].startswith("amqptx: error: bad URL"))
        self.assertTrue(lines[0].endswith("(see 'amqptx send --help')"))
        self.assertNotIn(_SECRET, lines[0])

    def test_help(self) -> None:
        """
        C{--help} prints the usage and exits with 0.
        """
        exit = self.assertRaises(SystemExit, cli.main, ["--help"])
        self.assertEqual(exit.code, 0)
        output = self.output()
        self.assertIn("Usage: amqptx COMMAND [options] URL", output)
        table = " ".join(output.split())
        for text in (
            "0 done",
            "1 failed",
            "2 timed out",
            "3 no connection",
            "4 authentication failed",
            "5 rejected",
            "64 bad command line",
            "130 interrupted",
        ):
            self.assertIn(text, table)
        exit = self.assertRaises(SystemExit, cli.main, ["receive", "--help"])
        self.assertIn("Usage: amqptx receive [options] URL", self.output())

    def test_version(self) -> None:
        """
        C{--version}, before or after the command, prints amqptx's version.
        """
        from amqptx import __version__

        for arguments in (["--version"], ["ping", "--version"]):
            exit = self.assertRaises(SystemExit, cli.main, arguments)
            self.assertEqual(exit.code, 0)
        self.assertEqual(self.output(), f"amqptx {__version__}\n" * 2)

    def execute(self, command: Any) -> tuple[int, str]:
        """
        Run L{cli.execute} with C{command} as C{ping}.

        @return: the exit status and what went to standard error.
        """
        self.patch(cli, "_COMMANDS", {"ping": command})
        err = io.StringIO()
        console = Console(io.BytesIO(), err)
        options = _command("ping", f"amqps://u:{_SECRET}@h/q")
        console.secrets = options.plan.secrets
        result: list[int] = []
        Deferred.fromCoroutine(cli.execute(None, "ping", options, console)).addCallback(
            result.append
        )
        return result[0], err.getvalue()

    def test_executeOK(self) -> None:
        """
        The command's exit status is the program's.
        """

        async def command(reactor: object, options: object, console: Console) -> int:
            return EXIT_TIMEOUT

        self.assertEqual(self.execute(command), (EXIT_TIMEOUT, ""))

    def test_executeFailed(self) -> None:
        """
        A L{CommandFailed} gives its line and status.
        """

        async def command(reactor: object, options: object, console: Console) -> int:
            raise CommandFailed(f"bad {_DECODED}", 5)

        self.assertEqual(self.execute(command), (5, "amqptx: error: bad ***\n"))

    def test_executeCrashed(self) -> None:
        """
        Any other exception gives one line, and the status of
        L{cli.exitStatus}.
        """

        async def command(reactor: object, options: object, console: Console) -> int:
            raise LinkDetached("amqp:not-found", "gone")

        code, err = self.execute(command)
        self.assertEqual(code, EXIT_REJECTED)
        self.assertEqual(
            err,
            "amqptx: error: the server detached the link to 'q': "
            "amqp:not-found: gone\n",
        )

    def test_interrupted(self) -> None:
        """
        When the reactor stops before the command ends, the program ends with
        130 after one line; what the command says afterwards is dropped.
        """
        reactor = _FakeReactor()
        never: Deferred[int] = Deferred()

        async def command(reactor: object, options: object, console: Console) -> int:
            return await never

        self.patch(cli, "_COMMANDS", {"ping": command})
        err = io.StringIO()
        console = Console(io.BytesIO(), err)
        finished = cli._run(reactor, "ping", _command("ping", "amqp://h"), console)
        failures: list[Failure] = []
        finished.addErrback(failures.append)
        self.assertEqual(failures, [])
        reactor.shutdown()
        self.assertEqual(
            failures[0].value.code,  # type: ignore[union-attr]
            EXIT_INTERRUPTED,
        )
        never.errback(AMQPConnectionLost())
        self.assertEqual(err.getvalue(), "amqptx: error: interrupted\n")

    def test_runEnds(self) -> None:
        """
        L{cli._run}'s Deferred fails with C{SystemExit} and the command's
        status.
        """

        async def command(reactor: object, options: object, console: Console) -> int:
            return EXIT_OK

        self.patch(cli, "_COMMANDS", {"ping": command})
        reactor = _FakeReactor()
        finished = cli._run(
            reactor,
            "ping",
            _command("ping", "amqp://h"),
            Console(io.BytesIO(), io.StringIO()),
        )
        failure = self.failureResultOf(finished, SystemExit)
        self.assertEqual(failure.value.code, EXIT_OK)
        reactor.shutdown()


class _FakeReactor:
    """
    Just the system event triggers of a reactor.
    """

    def __init__(self) -> None:
        self.triggers: list[Any] = []

    def addSystemEventTrigger(self, phase: str, event: str, f: Any) -> None:
        assert (phase, event) == ("before", "shutdown")
        self.triggers.append(f)

    def shutdown(self) -> None:
        for trigger in self.triggers:
            trigger()


class ExitStatusTests(SynchronousTestCase):
    """
    L{exitStatus}: which kind of failure each exception is.
    """

    def test_statuses(self) -> None:
        """
        Each status is distinct; every failure maps to the one documented.
        """
        statuses = [
            EXIT_OK,
            EXIT_FAILURE,
            EXIT_TIMEOUT,
            EXIT_CONNECTION,
            EXIT_AUTHENTICATION,
            EXIT_REJECTED,
            EXIT_USAGE,
            EXIT_INTERRUPTED,
        ]
        self.assertEqual(statuses, [0, 1, 2, 3, 4, 5, 64, 130])
        for name in (
            "EXIT_AUTHENTICATION",
            "EXIT_CONNECTION",
            "EXIT_REJECTED",
            "EXIT_TIMEOUT",
        ):
            self.assertIn(name, cli.__all__)

    def test_failures(self) -> None:
        """
        Refused logins are authentication failures; messages not accepted
        and refused links, rejections; anything that ends or prevents the
        connection, connection failures; a request without reply, a
        timeout.
        """
        cases: list[tuple[BaseException, int]] = [
            (AuthenticationFailed("amqp:unauthorized-access"), EXIT_AUTHENTICATION),
            (OpenRefused("amqp:unauthorized-access", "vhost"), EXIT_AUTHENTICATION),
            (OpenRefused("amqp:not-found", "no vhost"), EXIT_CONNECTION),
            (MessageRejected(), EXIT_REJECTED),
            (MessageReleased(), EXIT_REJECTED),
            (MessageModified(True, True), EXIT_REJECTED),
            (LinkDetached("amqp:unauthorized-access"), EXIT_REJECTED),
            (SessionEnded("amqp:not-found"), EXIT_REJECTED),
            (SessionEnded("amqp:internal-error"), EXIT_FAILURE),
            (neterror.ConnectionRefusedError(), EXIT_CONNECTION),
            (neterror.DNSLookupError("x"), EXIT_CONNECTION),
            (neterror.TimeoutError(), EXIT_CONNECTION),
            (TLSError("certificate verify failed"), EXIT_CONNECTION),
            (FailoverExhausted([], 1), EXIT_CONNECTION),
            (AMQPConnectionLost(), EXIT_CONNECTION),
            (neterror.ConnectionLost(), EXIT_CONNECTION),
            (neterror.ConnectionDone(), EXIT_CONNECTION),
            (ConnectionClosed("amqp:connection:forced"), EXIT_CONNECTION),
            (ProtocolError("amqp:decode-error"), EXIT_CONNECTION),
            (RequestTimedOut(), EXIT_TIMEOUT),
            (TimeoutError(), EXIT_TIMEOUT),
            (CommandFailed("x", EXIT_USAGE), EXIT_USAGE),
            (CommandFailed("standard output is closed"), EXIT_FAILURE),
            (CancelledError(), EXIT_FAILURE),
            (KeyError("k"), EXIT_FAILURE),
        ]
        for failure, expected in cases:
            self.assertEqual(exitStatus(failure), expected, repr(failure))

    def test_failoverDescription(self) -> None:
        """
        When every server failed, the line says why for each, in order.
        """
        plan = _command("ping", "amqp://h1", "--failover", "amqp://h2:99").plan
        failure = FailoverExhausted(
            [
                (object(), Failure(neterror.ConnectionRefusedError())),  # type: ignore[list-item]
                (object(), Failure(neterror.DNSLookupError("x"))),  # type: ignore[list-item]
            ],
            1,
        )
        self.assertEqual(
            describeConnectFailure(failure, plan),
            "cannot connect to any of 2 servers: cannot connect to "
            "amqp://h1:5672: connection refused; cannot connect to "
            "amqp://h2:99: unknown host 'h2'",
        )


class AttachTests(SynchronousTestCase):
    """
    A link the server refuses, detaching it or ending its session.
    """

    def test_refused(self) -> None:
        """
        Either way, the line names the address and the reason, and the
        status is L{EXIT_REJECTED}.
        """
        from twisted.internet.defer import fail

        plan = _command("receive", "amqp://h/orders").plan
        for failure, expected in [
            (
                LinkDetached("amqp:not-found", "no queue"),
                "cannot attach to 'orders': amqp:not-found: no queue",
            ),
            (
                SessionEnded("amqp:invalid-field", "Attach rejected"),
                "cannot attach to 'orders': the server ended the session: "
                "amqp:invalid-field: Attach rejected",
            ),
        ]:
            attached = Deferred.fromCoroutine(cli._attached(fail(failure), plan))
            error = self.failureResultOf(attached, CommandFailed).value
            assert isinstance(error, CommandFailed)
            self.assertEqual((error.message, error.code), (expected, EXIT_REJECTED))


class _Terminal(io.StringIO):
    """
    Standard error on a terminal.
    """

    def isatty(self) -> bool:
        return True


class ProgressTests(SynchronousTestCase):
    """
    L{Progress}: a status line redrawn over itself, on the clock.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.written: list[str] = []

    def progress(self, verb: str = "sent", total: int | None = 10) -> Progress:
        return Progress(self.written.append, self.clock, verb, total)

    def test_nothingAtFirst(self) -> None:
        """
        Nothing is drawn before one interval has passed: a quick run shows
        nothing, not even when finished.
        """
        progress = self.progress()
        progress.done = 10
        self.clock.advance(0.2)
        progress.finish()
        self.assertEqual(self.written, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_draws(self) -> None:
        """
        After each interval, the line is drawn after a carriage return:
        messages done, of how many, the rate and the time so far.
        """
        progress = self.progress()
        self.clock.advance(0.5)
        self.assertEqual(self.written, ["\rsent 0 of 10 (0%), 0.0 msg/s, 0.5 s"])
        progress.done = 3
        progress.notAccepted = 1
        self.clock.advance(0.5)
        self.assertEqual(
            self.written[-1],
            "\rsent 3 of 10 (30%), 1 not accepted, 3.0 msg/s, 1.0 s",
        )
        before = self.written[-1]
        progress.done = 1000
        progress.notAccepted = 0
        self.clock.advance(3.0)
        after = "sent 1000 of 10 (10000%), 250 msg/s, 4.0 s"
        self.assertEqual(
            self.written[-1], "\r" + after + " " * (len(before) - 1 - len(after))
        )

    def test_noTotal(self) -> None:
        """
        Without a total, the line has only the count.
        """
        progress = self.progress("received", None)
        progress.done = 7
        self.clock.advance(2.0)
        self.assertEqual(self.written[-1], "\rreceived 7, 3.5 msg/s, 2.0 s")

    def test_fewUpdates(self) -> None:
        """
        However often time moves, the line is drawn at most four times a
        second.
        """
        progress = self.progress()
        for _ in range(100):
            progress.done += 1
            self.clock.advance(0.01)
        self.assertEqual(len(self.written), 4)

    def test_finish(self) -> None:
        """
        Finishing draws the line a last time, ends it with a newline and
        stops the updates.
        """
        progress = self.progress()
        self.clock.advance(0.5)
        progress.done = 10
        progress.finish()
        self.assertEqual(
            self.written[-2:], ["\rsent 10 of 10 (100%), 20 msg/s, 0.5 s", "\n"]
        )
        self.assertEqual(self.clock.getDelayedCalls(), [])
        progress.finish()
        self.assertEqual(len(self.written), 3)

    def test_hide(self) -> None:
        """
        Hiding blanks the line; restoring shows it again as it was.
        """
        progress = self.progress()
        self.assertFalse(progress.hide())
        self.clock.advance(0.5)
        self.written.clear()
        self.assertTrue(progress.hide())
        line = "sent 0 of 10 (0%), 0.0 msg/s, 0.5 s"
        self.assertEqual(self.written, ["\r" + " " * len(line) + "\r"])
        self.assertFalse(progress.hide())
        progress.restore()
        progress.restore()
        self.assertEqual(self.written[1:], [line])
        progress.hide()
        self.clock.advance(0.25)
        self.assertEqual(self.written[-1], "\rsent 0 of 10 (0%), 0.0 msg/s, 0.8 s")


class ConsoleProgressTests(SynchronousTestCase):
    """
    L{Console} shows a progress line only on a terminal, and keeps its other
    output above the line.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.err = _Terminal()

    def test_notATerminal(self) -> None:
        """
        When standard error is not a terminal, there is no progress line.
        """
        err = io.StringIO()
        console = Console(io.BytesIO(), err)
        self.assertIsNone(console.startProgress(self.clock, "sent", 5))
        self.clock.advance(10)
        console.finishProgress()
        self.assertEqual(err.getvalue(), "")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_terminal(self) -> None:
        """
        On a terminal, the progress line is drawn on the clock.
        """
        console = Console(io.BytesIO(), self.err)
        progress = console.startProgress(self.clock, "received", None)
        assert progress is not None
        self.assertIs(console.progress, progress)
        self.clock.advance(0.5)
        progress.done = 1
        console.finishProgress()
        self.assertEqual(
            self.err.getvalue(),
            "\rreceived 0, 0.0 msg/s, 0.5 s\rreceived 1, 2.0 msg/s, 0.5 s\n",
        )
        self.assertIsNone(console.progress)

    def test_notes(self) -> None:
        """
        A warning goes above the progress line: the line is blanked, the
        warning written, the line shown again.
        """
        console = Console(io.BytesIO(), self.err)
        console.startProgress(self.clock, "sent", 2)
        self.clock.advance(0.5)
        start = len(self.err.getvalue())
        console.note("warning: slow")
        line = "sent 0 of 2 (0%), 0.0 msg/s, 0.5 s"
        self.assertEqual(
            self.err.getvalue()[start:],
            "\r" + " " * len(line) + "\ramqptx: warning: slow\n" + line,
        )

    def test_error(self) -> None:
        """
        An error ends the progress line first, which stays as it last was.
        """
        console = Console(io.BytesIO(), self.err)
        console.startProgress(self.clock, "sent", 2)
        self.clock.advance(0.5)
        console.error("boom")
        self.assertTrue(
            self.err.getvalue().endswith(
                "\rsent 0 of 2 (0%), 0.0 msg/s, 0.5 s\namqptx: error: boom\n"
            )
        )
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_resultsOnTheSameTerminal(self) -> None:
        """
        When standard output is the terminal too, a line of results goes
        above the progress line; when it is not, the progress line stays.
        """
        out = _BinaryTerminal()
        console = Console(out, self.err)
        console.startProgress(self.clock, "received", 3)
        self.clock.advance(0.5)
        start = len(self.err.getvalue())
        console.line("body")
        line = "received 0 of 3 (0%), 0.0 msg/s, 0.5 s"
        self.assertEqual(
            self.err.getvalue()[start:], "\r" + " " * len(line) + "\r" + line
        )
        self.assertEqual(out.getvalue(), b"body\n")
        console.finishProgress()
        piped = Console(io.BytesIO(), self.err)
        piped.startProgress(self.clock, "received", 3)
        self.clock.advance(0.5)
        start = len(self.err.getvalue())
        piped.line("body")
        self.assertEqual(self.err.getvalue()[start:], "")


class _BinaryTerminal(io.BytesIO):
    """
    Standard output on a terminal.
    """

    def isatty(self) -> bool:
        return True


@dataclass(frozen=True)
class _Result:
    """
    What a command run in memory did.
    """

    code: int
    out: bytes
    err: str

    @property
    def errors(self) -> list[str]:
        return self.err.splitlines()


class _InMemory:
    """
    amqptx's broker listening on a L{MemoryReactorClock}, and commands run
    against it there: connection attempts to its ports complete, attempts to
    other ports are refused (but those to C{silent} ports, which hang).
    """

    def __init__(
        self,
        config: BrokerConfig | None = None,
        users: dict[str, bytes] | None = None,
        ports: tuple[int, ...] = (5672,),
        silent: tuple[int, ...] = (),
    ) -> None:
        self.reactor = MemoryReactorClock()
        self.broker = Broker(config or BrokerConfig(), self.reactor)
        sasl = None
        if users is not None:
            sasl = SASLConfig(
                checkers=(InMemoryUsernamePasswordDatabaseDontUse(**users),),
                allowInsecure=True,
                failureDelay=0,
            )
        for port in ports:
            AMQPServerEndpoint(self.reactor, port, sasl=sasl).listen(
                self.broker.factory()
            )
        self.silent = silent
        self.pumps: list[Any] = []

    def _connections(self) -> None:
        """
        Refuse or complete the pending connection attempts.
        """
        reactor = self.reactor
        listening = {info[0] for info in reactor.tcpServers}
        for index in reversed(range(len(reactor.tcpClients))):
            port = reactor.tcpClients[index][1]
            if port not in listening and port not in self.silent:
                factory = reactor.tcpClients.pop(index)[2]
                connector = reactor.connectors.pop(index)
                factory.clientConnectionFailed(
                    connector, Failure(neterror.ConnectionRefusedError())
                )
        while True:
            try:
                self.pumps.append(completeConnection(reactor))
            except LookupError:
                return

    def start(self, *arguments: str, err: io.StringIO | None = None) -> _Running:
        """
        Start a command.

        @param arguments: the command line.
        @param err: standard error; by default not a terminal.
        @return: the running command; L{drive} it to its end.
        """
        return _Running(self.reactor, arguments, err)

    def drive(
        self,
        *commands: _Running,
        step: float = 0.01,
        during: Callable[[int], None] = lambda turn: None,
    ) -> None:
        """
        Run commands to their end, in turns: connections complete, bytes move
        one way and the other, then the clock moves C{step} seconds.

        @param commands: the running commands.
        @param step: the seconds each turn takes.
        @param during: called at the start of each turn, with its number.
        """
        for turn in range(5000):
            if all(command.codes for command in commands):
                return
            during(turn)
            self._turn(step)
        raise AssertionError(f"{commands} did not end")

    def turns(self, seconds: float, step: float = 0.01) -> None:
        """
        Let the commands run for a while (see L{drive}).

        @param seconds: how long.
        @param step: the seconds each turn takes.
        """
        for _ in range(round(seconds / step)):
            self._turn(step)

    def _turn(self, step: float) -> None:
        self._connections()
        for pump in self.pumps:
            pump.pump()
        self.reactor.advance(step)

    def run(
        self,
        *arguments: str,
        err: io.StringIO | None = None,
        step: float = 0.01,
        during: Callable[[int], None] = lambda turn: None,
    ) -> _Result:
        """
        Run a command to its end (see L{drive}).

        @return: what the command did.
        """
        command = self.start(*arguments, err=err)
        self.drive(command, step=step, during=during)
        return command.result()


class _Running:
    """
    A command running in memory.

    @ivar codes: its exit status, once it ended.
    """

    def __init__(
        self, reactor: Any, arguments: tuple[str, ...], err: io.StringIO | None
    ) -> None:
        options = parseCommandLine(list(arguments))
        sub = options.subOptions
        assert options.subCommand is not None and sub is not None
        self._arguments = arguments
        self._out = io.BytesIO()
        self._err = io.StringIO() if err is None else err
        console = Console(self._out, self._err)
        console.secrets = sub.plan.secrets
        self.codes: list[int] = []
        Deferred.fromCoroutine(
            cli.execute(reactor, options.subCommand, sub, console)
        ).addCallback(self.codes.append)

    def __repr__(self) -> str:
        return f"<{' '.join(self._arguments)}: {self._err.getvalue()!r}>"

    def result(self) -> _Result:
        """
        @return: what the command did.
        """
        return _Result(self.codes[0], self._out.getvalue(), self._err.getvalue())


class CommandExitTests(SynchronousTestCase):
    """
    The commands, run in memory against amqptx's broker: each failure's
    line and exit status.
    """

    def assertOneError(self, result: _Result, code: int, line: str) -> None:
        """
        Assert that a run failed with C{code} and the one line C{line} on
        standard error.
        """
        self.assertEqual(
            (result.code, result.errors), (code, [f"amqptx: error: {line}"])
        )

    def test_ok(self) -> None:
        """
        C{send} then C{receive}: 0.
        """
        server = _InMemory()
        sent = server.run("send", "amqp://h/q", "-m", "m{n}", "-c", "2")
        self.assertEqual((sent.code, sent.err), (EXIT_OK, ""))
        received = server.run("receive", "amqp://h/q", "-c", "2")
        self.assertEqual((received.code, received.out), (EXIT_OK, b"m1\nm2\n"))

    def test_refused(self) -> None:
        """
        Nothing listening: connection failure.
        """
        result = _InMemory(ports=()).run("ping", "amqp://h")
        self.assertOneError(
            result,
            EXIT_CONNECTION,
            "cannot connect to amqp://h:5672: connection refused",
        )

    def test_connectTimeout(self) -> None:
        """
        No AMQP connection within C{--connect-timeout}: connection failure.
        """
        result = _InMemory(ports=(), silent=(5672,)).run(
            "receive", "amqp://h/q", "--connect-timeout", "1", step=0.1
        )
        self.assertOneError(
            result,
            EXIT_CONNECTION,
            "cannot connect to amqp://h:5672: no AMQP connection within 1 s",
        )

    def test_connectionLost(self) -> None:
        """
        A connection lost while receiving: connection failure.
        """
        server = _InMemory()

        def drop(turn: int) -> None:
            if turn == 50:
                for pump in server.pumps:
                    pump.serverIO.abortConnection()

        result = server.run("receive", "amqp://h/q", "-c", "2", during=drop)
        self.assertEqual(result.code, EXIT_CONNECTION, result.err)
        self.assertEqual(len(result.errors), 1, result.err)
        self.assertIn("connection", result.errors[0])

    def test_wrongPassword(self) -> None:
        """
        A refused login: authentication failure, with C{--reconnect} too
        (no retry), and no password shown.
        """
        server = _InMemory(users={"alice": b"secret"})
        for extra in ([], ["--reconnect"]):
            result = server.run("ping", "amqp://alice:wrong@h", "--insecure", *extra)
            self.assertOneError(
                result,
                EXIT_AUTHENTICATION,
                "authentication failed at amqp://alice:***@h:5672: "
                "amqp:unauthorized-access: Authentication failed [mech=PLAIN]",
            )
        good = server.run("ping", "amqp://alice:secret@h", "--insecure")
        self.assertEqual(good.code, EXIT_OK, good.err)

    def test_noPermission(self) -> None:
        """
        An address the user may not use: rejection, for each command.
        """
        server = _InMemory(
            BrokerConfig(permissions=Permissions.parse("alice all allowed")),
            users={"alice": b"secret"},
        )
        url = "amqp://alice:secret@h/forbidden"
        for arguments in (
            ["send", url, "-m", "x"],
            ["receive", url],
            ["request", url, "-m", "x"],
        ):
            result = server.run(*arguments, "--insecure")
            self.assertEqual(result.code, EXIT_REJECTED, result.err)
            self.assertEqual(len(result.errors), 1, result.err)
            self.assertIn("amqp:unauthorized-access", result.err)
        allowed = server.run(
            "send", "amqp://alice:secret@h/allowed", "-m", "x", "--insecure"
        )
        self.assertEqual(allowed.code, EXIT_OK, allowed.err)

    def test_notFound(self) -> None:
        """
        An address the server does not have: rejection.
        """
        server = _InMemory(BrokerConfig(autoCreate=False))
        result = server.run("receive", "amqp://h/nowhere")
        self.assertEqual(result.code, EXIT_REJECTED, result.err)
        self.assertIn("cannot attach to 'nowhere': amqp:not-found", result.err)

    def test_rejected(self) -> None:
        """
        Messages the server rejects: rejection, for C{send} and
        C{request}.
        """
        server = _InMemory(BrokerConfig(maxMessageSize=200))
        sent = server.run("send", "amqp://h/q", "-m", "x" * 300, "-c", "2", "-q")
        self.assertEqual(sent.code, EXIT_REJECTED)
        self.assertEqual(sent.out, b"2 messages: 2 rejected\n")
        self.assertEqual(sent.errors, ["amqptx: error: 2 of 2 messages not accepted"])
        asked = server.run("request", "amqp://h/q", "-m", "x" * 300)
        self.assertEqual(asked.code, EXIT_REJECTED, asked.err)
        self.assertIn("the request to 'q' was rejected", asked.err)

    def test_timeouts(self) -> None:
        """
        Too few messages, no reply: timeout.
        """
        server = _InMemory()
        self.assertOneError(
            server.run("receive", "amqp://h/q", "-t", "0.5"),
            EXIT_TIMEOUT,
            "received 0 of 1 message within 0.5 s",
        )
        self.assertOneError(
            server.run("request", "amqp://h/nobody", "-m", "x", "-t", "0.5"),
            EXIT_TIMEOUT,
            "no reply from 'nobody' within 0.5 s",
        )

    def test_outputClosed(self) -> None:
        """
        Another failure (standard output closed): 1.
        """
        server = _InMemory()
        server.run("send", "amqp://h/q", "-m", "x")
        options = parseCommandLine(["receive", "amqp://h/q"])
        out = io.BytesIO()
        out.close()
        err = io.StringIO()
        codes: list[int] = []
        Deferred.fromCoroutine(
            cli.execute(
                server.reactor, "receive", options.subOptions, Console(out, err)
            )
        ).addCallback(codes.append)
        server.turns(1.0)
        self.assertEqual(codes, [EXIT_FAILURE])
        self.assertEqual(err.getvalue(), "amqptx: error: standard output is closed\n")

    def test_failover(self) -> None:
        """
        With C{--failover}, the next server is tried when one fails; when
        all fail, the line says why for each: connection failure.
        """
        server = _InMemory()
        result = server.run("ping", "amqp://h:1", "--failover", "amqp://h:5672")
        self.assertEqual(result.code, EXIT_OK, result.err)
        self.assertTrue(result.out.startswith(b"connected to amqp://h:5672: "))
        again = server.run(
            "send", "amqp://h:1/q", "-m", "x", "--failover", "amqp://h", "--reconnect"
        )
        self.assertEqual((again.code, again.out), (EXIT_OK, b"message 1: accepted\n"))
        self.assertOneError(
            server.run("ping", "amqp://h:1", "--failover", "amqp://h:2"),
            EXIT_CONNECTION,
            "cannot connect to any of 2 servers: cannot connect to amqp://h:1: "
            "connection refused; cannot connect to amqp://h:2: connection refused",
        )


class CommandProgressTests(SynchronousTestCase):
    """
    C{send} and C{receive} show their progress on a terminal, and only
    there.
    """

    def slowSend(
        self, *arguments: str, err: io.StringIO, full: bool = False
    ) -> _Result:
        """
        Run C{send -m x ARGUMENTS} to a queue that holds one message: the
        others wait for a receiver, which comes after a second.

        @param full: whether the queue holds a message already.
        @return: what C{send} did.
        """
        server = _InMemory(BrokerConfig(maxQueueDepth=1))
        if full:
            server.run("send", "amqp://h/q", "-m", "first")
        sending = server.start("send", "amqp://h/q", "-m", "x", *arguments, err=err)
        server.turns(1.0)
        self.assertEqual(sending.codes, [])
        receiving = server.start("receive", "amqp://h/q", "-c", "0", "-t", "1")
        server.drive(sending, receiving)
        return sending.result()

    def test_send(self) -> None:
        """
        A slow C{send --count} on a terminal: the status line counts the
        messages a few times a second, and ends with a newline; the outcomes
        are on standard output.
        """
        result = self.slowSend("-c", "5", err=_Terminal())
        self.assertEqual(result.code, EXIT_OK)
        self.assertEqual(len(result.out.splitlines()), 5)
        draws = result.err.split("\r")[1:]
        self.assertEqual(len(draws), 5)
        for draw in draws[:-1]:
            self.assertRegex(draw, r"^sent 1 of 5 \(20%\), \d\.\d msg/s, [01]\.\d s$")
        self.assertRegex(draws[-1], r"^sent 5 of 5 \(100%\), \d\.\d msg/s, 1\.\d s\n$")

    def test_sendQuiet(self) -> None:
        """
        C{--quiet} and C{--no-progress} show no progress.
        """
        for arguments in (["-c", "5", "-q"], ["-c", "5", "--no-progress"]):
            result = self.slowSend(*arguments, err=_Terminal())
            self.assertEqual((result.code, result.err), (EXIT_OK, ""))

    def test_notATerminal(self) -> None:
        """
        When standard error is not a terminal, a slow run prints nothing
        there but its error.
        """
        result = self.slowSend("-c", "5", err=io.StringIO())
        self.assertEqual((result.code, result.err), (EXIT_OK, ""))
        server = _InMemory()
        server.run("send", "amqp://h/q", "-m", "x", "-c", "5")
        result = server.run("receive", "amqp://h/q", "-c", "9", "-t", "2")
        self.assertEqual(result.code, EXIT_TIMEOUT)
        self.assertEqual(
            result.errors, ["amqptx: error: received 5 of 9 messages within 2 s"]
        )

    def test_oneMessage(self) -> None:
        """
        C{send} and C{receive} of a single message show no progress.
        """
        self.assertEqual(self.slowSend(err=_Terminal(), full=True).err, "")
        server = _InMemory()
        result = server.run("receive", "amqp://h/q", "-t", "1", err=_Terminal())
        self.assertEqual(
            result.err, "amqptx: error: received 0 of 1 message within 1 s\n"
        )

    def test_receive(self) -> None:
        """
        C{receive} on a terminal until its timeout: a few updates a second,
        then the last state and the error on a line of its own.
        """
        server = _InMemory()
        server.run("send", "amqp://h/q", "-m", "x", "-c", "2")
        err = _Terminal()
        result = server.run("receive", "amqp://h/q", "-c", "3", "-t", "2", err=err)
        self.assertEqual(result.code, EXIT_TIMEOUT)
        self.assertEqual(result.out, b"x\nx\n")
        progress, error = result.err.split("\n")[:2]
        draws = progress.split("\r")[1:]
        self.assertLessEqual(len(draws), 2 / 0.25 + 1)
        self.assertGreaterEqual(len(draws), 4)
        self.assertRegex(draws[-1], r"^received 2 of 3 \(66%\), 1\.\d msg/s, [\d.]+ s$")
        self.assertEqual(error, "amqptx: error: received 2 of 3 messages within 2 s")
        self.assertTrue(result.err.endswith(" s\n" + error + "\n"))
