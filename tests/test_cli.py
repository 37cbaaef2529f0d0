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
from typing import Any
from uuid import UUID

from proton import Message, symbol, ulong
from twisted.internet import error as neterror
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.ssl import PrivateCertificate
from twisted.logger import LogLevel
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from amqptx import (
    AMQPConnectionLost,
    AuthenticationFailed,
    ConnectionClosed,
    LinkDetached,
    MessageModified,
    MessageRejected,
    MessageReleased,
    OpenRefused,
    ProtocolError,
    SessionEnded,
    TLSError,
    parseURL,
)
from amqptx import _cli as cli
from amqptx._cli import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    CommandFailed,
    ConnectionPlan,
    Console,
    MessageTemplate,
    PingOptions,
    ReceiveOptions,
    RequestOptions,
    SendOptions,
    describeConnectFailure,
    describeFailure,
    jsonable,
    messageLine,
    messageRecord,
    outcomeText,
    parseCommandLine,
)
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
        for namespace, level in [
            ("amqptx._reconnect.ReconnectingAMQPClientFactory", LogLevel.warn),
            ("amqptx._reconnect.ReconnectingAMQPClientFactory", LogLevel.info),
            ("amqptx._protocol", LogLevel.error),
        ]:
            observer(
                {
                    "log_format": "from {namespace} at {level}",
                    "namespace": namespace,
                    "level": level.name,
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
        self.assertIn("Usage: amqptx COMMAND [options] URL", self.output())
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
        Any other exception gives one line, and status 1.
        """

        async def command(reactor: object, options: object, console: Console) -> int:
            raise LinkDetached("amqp:not-found", "gone")

        code, err = self.execute(command)
        self.assertEqual(code, EXIT_FAILURE)
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
        self.assertEqual(failures[0].value.code, 130)  # type: ignore[union-attr]
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
