# -*- test-case-name: tests.test_endpoints -*-
# mypy: allow-untyped-calls
"""
Tests for L{amqptx._parsers} (the C{amqp:} and C{amqps:} endpoint strings),
L{amqptx._endpoints} (the endpoints they make) and L{amqptx.connect}, all in
memory on a L{MemoryReactorClock}.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    TCP4ServerEndpoint,
    clientFromString,
    serverFromString,
)
from twisted.internet.error import (
    ConnectingCancelledError,
    ConnectionRefusedError,
    NoProtocol,
    TimeoutError,
)
from twisted.internet.interfaces import (
    IAddress,
    IHostnameResolver,
    IHostResolution,
    IProtocol,
    IProtocolFactory,
    IResolutionReceiver,
    IStreamClientEndpoint,
    IStreamClientEndpointStringParserWithReactor,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.plugin import IPlugin
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

import amqptx
from amqptx import (
    AMQPClientEndpoint,
    AMQPConnection,
    AMQPServerEndpoint,
    AuthenticationFailed,
    ConnectionSettings,
    ProtocolError,
    TLSError,
)
from amqptx.testing import IOPump, TestPeer, completeConnection
from tests._certs import PKI, sharedPKI
from twisted.plugins import amqptx_plugins

# Helpers ----------------------------------------------------------------------


@implementer(IHostResolution)
class _Resolution:
    """
    The resolution of one name by L{_LiteralResolver}.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:
        """
        Nothing to cancel: the resolution is already complete.
        """


@implementer(IHostnameResolver)
class _LiteralResolver:
    """
    A name resolver that resolves every name to itself (an IPv6 address when
    it has a colon), so that C{connectTCP} on a L{MemoryReactorClock} records
    the host the endpoint was given instead of the C{127.0.0.1} the reactor's
    own resolver answers for everything.
    """

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Sequence[type[IAddress]] | None = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        """
        Resolve C{hostName} to itself, at once.

        @param resolutionReceiver: told about the resolution.
        @param hostName: the name.
        @param portNumber: the port.
        @param addressTypes: ignored.
        @param transportSemantics: ignored.
        @return: the resolution.
        """
        resolution = _Resolution(hostName)
        resolutionReceiver.resolutionBegan(resolution)
        address: IAddress
        if ":" in hostName:
            address = IPv6Address("TCP", hostName, portNumber)
        else:
            address = IPv4Address("TCP", hostName, portNumber)
        resolutionReceiver.addressResolved(address)
        resolutionReceiver.resolutionComplete()
        return resolution


def _reactor() -> MemoryReactorClock:
    """
    @return: a memory reactor whose resolver answers every name with itself.
    """
    reactor = MemoryReactorClock()
    reactor.installNameResolver(_LiteralResolver())
    return reactor


def _connectionFactory() -> Factory:
    """
    @return: a factory of L{AMQPConnection}s.
    """
    return Factory.forProtocol(AMQPConnection)


def _peerFactory() -> Factory:
    """
    @return: a factory of L{TestPeer}s (servers by default).
    """
    return Factory.forProtocol(TestPeer)


class _Silent(Protocol):
    """
    A server that accepts the TCP connection and never says anything.
    """


class _HTTP(Protocol):
    """
    A server that answers with HTTP, not AMQP.
    """

    def connectionMade(self) -> None:
        """
        Greet the client in the wrong protocol.
        """
        assert self.transport is not None
        self.transport.write(b"HTTP/1.1 400 Bad\r\n\r\n")


class _StringsMixin:
    """
    Parse endpoint strings on a fresh memory reactor.

    @ivar reactor: the reactor the last endpoint was made on.
    """

    reactor: MemoryReactorClock

    def client(self, description: str) -> AMQPClientEndpoint:
        """
        Parse a client endpoint string.

        @param description: the endpoint string.
        @return: the endpoint, checked to be an L{AMQPClientEndpoint}.
        """
        self.reactor = _reactor()
        endpoint = clientFromString(self.reactor, description)
        assert isinstance(endpoint, AMQPClientEndpoint), endpoint
        return endpoint

    def server(self, description: str) -> AMQPServerEndpoint:
        """
        Parse a server endpoint string.

        @param description: the endpoint string.
        @return: the endpoint, checked to be an L{AMQPServerEndpoint}.
        """
        self.reactor = _reactor()
        endpoint = serverFromString(self.reactor, description)
        assert isinstance(endpoint, AMQPServerEndpoint), endpoint
        return endpoint

    def connected(self, description: str) -> tuple[Any, ...]:
        """
        Parse a client endpoint string and connect with it.

        @param description: the endpoint string.
        @return: the C{connectTCP} arguments the reactor recorded: host,
            port, factory, timeout, bind address.
        """
        endpoint = self.client(description)
        endpoint.connect(_connectionFactory())
        return tuple(self.reactor.tcpClients[-1])

    def listened(self, description: str) -> tuple[Any, ...]:
        """
        Parse a server endpoint string and listen with it.

        @param description: the endpoint string.
        @return: the C{listenTCP} arguments the reactor recorded: port,
            factory, backlog, interface.
        """
        endpoint = self.server(description)
        endpoint.listen(_peerFactory())
        return tuple(self.reactor.tcpServers[-1])


def _plainClient(host: str, **changes: Any) -> ConnectionSettings:
    """
    @param host: the host name.
    @param changes: settings that differ from the defaults.
    @return: the settings of a client endpoint for C{host} with no options.
    """
    values: dict[str, Any] = {
        "role": "client",
        "hostname": host,
        "mechanisms": ("ANONYMOUS",),
        "allowInsecureMechanisms": False,
    }
    values.update(changes)
    return ConnectionSettings(**values)


# Client endpoint strings --------------------------------------------------------


class ClientStringTests(_StringsMixin, SynchronousTestCase):
    """
    Every accepted form of C{amqp:} and C{amqps:} client endpoint strings.
    """

    def test_hostPort(self) -> None:
        """
        C{amqp:HOST:PORT} connects to that host and port over plain TCP, with
        the default 30 s timeout, SASL ANONYMOUS and the host as virtual host.
        """
        endpoint = self.client("amqp:example.com:5673")
        self.assertEqual(repr(endpoint), "<AMQPClientEndpoint amqp://example.com:5673>")
        self.assertEqual(endpoint.settings, _plainClient("example.com"))
        self.assertEqual(self.reactor.tcpClients, [])
        endpoint.connect(_connectionFactory())
        host, port, factory, timeout, bindAddress = self.reactor.tcpClients[-1]
        self.assertEqual(
            (host, port, timeout, bindAddress), ("example.com", 5673, 30.0, None)
        )

    def test_numericNotResolved(self) -> None:
        """
        A numeric address, IPv4 or IPv6, is connected to at once, without
        asking the reactor's name resolver (which Twisted runs in a thread).
        """

        class Refusing(_LiteralResolver):
            def resolveHostName(self, *args: Any, **kwargs: Any) -> IHostResolution:
                raise AssertionError("a numeric address was resolved")

        for description, host in [
            ("amqp:127.0.0.1:5673", "127.0.0.1"),
            ("amqp:[::1]:5673", "::1"),
        ]:
            endpoint = self.client(description)
            self.reactor.installNameResolver(Refusing())
            endpoint.connect(_connectionFactory())
            self.assertEqual(tuple(self.reactor.tcpClients[-1][:2]), (host, 5673))

    def test_hostPortOptions(self) -> None:
        """
        C{amqp:host=HOST:port=PORT} is the same as C{amqp:HOST:PORT}.
        """
        endpoint = self.client("amqp:host=example.com:port=5673")
        self.assertEqual(repr(endpoint), "<AMQPClientEndpoint amqp://example.com:5673>")
        self.assertEqual(endpoint.settings, _plainClient("example.com"))
        self.assertEqual(
            self.connected("amqp:host=example.com:port=5673")[:2],
            ("example.com", 5673),
        )

    def test_hostAndPortOption(self) -> None:
        """
        A positional host may be completed with a C{port=} option.
        """
        self.assertEqual(
            self.connected("amqp:example.com:port=5673")[:2], ("example.com", 5673)
        )

    def test_defaultPort(self) -> None:
        """
        C{amqp:HOST} connects to port 5672.
        """
        self.assertEqual(self.connected("amqp:example.com")[:2], ("example.com", 5672))
        self.assertEqual(
            repr(self.client("amqp:example.com")),
            "<AMQPClientEndpoint amqp://example.com:5672>",
        )

    def test_defaultTLSPort(self) -> None:
        """
        C{amqps:HOST} connects to port 5671, with TLS; credentials-revealing
        mechanisms are allowed since the connection is encrypted.
        """
        self.assertEqual(self.connected("amqps:example.com")[:2], ("example.com", 5671))
        endpoint = self.client("amqps:example.com")
        self.assertEqual(
            repr(endpoint), "<AMQPClientEndpoint amqps://example.com:5671>"
        )
        self.assertEqual(
            endpoint.settings,
            _plainClient("example.com", allowInsecureMechanisms=True),
        )

    def test_ipv6Brackets(self) -> None:
        """
        C{amqp:[::1]:5672} connects to the IPv6 address C{::1}; the brackets
        are neither in the address connected to nor in the virtual host.
        """
        endpoint = self.client("amqp:[::1]:5672")
        self.assertEqual(repr(endpoint), "<AMQPClientEndpoint amqp://[::1]:5672>")
        self.assertEqual(endpoint.settings, _plainClient("::1"))
        self.assertEqual(self.connected("amqp:[::1]:5672")[:2], ("::1", 5672))

    def test_ipv6Escaped(self) -> None:
        r"""
        C{amqp:host=\:\:1:port=5672}, with the colons escaped, is the same as
        C{amqp:[::1]:5672}.
        """
        endpoint = self.client(r"amqp:host=\:\:1:port=5672")
        self.assertEqual(repr(endpoint), "<AMQPClientEndpoint amqp://[::1]:5672>")
        self.assertEqual(endpoint.settings, _plainClient("::1"))
        self.assertEqual(
            self.connected(r"amqp:host=\:\:1:port=5672")[:2], ("::1", 5672)
        )

    def test_ipv6WithPortOption(self) -> None:
        """
        A bracketed IPv6 address may be completed with a C{port=} option.
        """
        self.assertEqual(self.connected("amqp:[::1]:port=5673")[:2], ("::1", 5673))

    def test_url(self) -> None:
        """
        The URL form C{amqp://host:port} is accepted.
        """
        endpoint = self.client("amqp://example.com:5673")
        self.assertEqual(repr(endpoint), "<AMQPClientEndpoint amqp://example.com:5673>")
        self.assertEqual(endpoint.settings, _plainClient("example.com"))
        self.assertEqual(
            self.connected("amqp://example.com:5673")[:2], ("example.com", 5673)
        )

    def test_urlDefaultPort(self) -> None:
        """
        The URL form without a port uses the scheme's default port.
        """
        self.assertEqual(
            self.connected("amqp://example.com")[:2], ("example.com", 5672)
        )
        self.assertEqual(
            self.connected("amqps://example.com")[:2], ("example.com", 5671)
        )

    def test_urlCredentialsInsecure(self) -> None:
        """
        The URL form's user and password are used, with SASL PLAIN; over
        plain TCP only with C{allowInsecurePlain=yes}.
        """
        endpoint = self.client("amqp://user:pw@example.com:5673:allowInsecurePlain=yes")
        self.assertEqual(repr(endpoint), "<AMQPClientEndpoint amqp://example.com:5673>")
        self.assertEqual(
            endpoint.settings,
            _plainClient(
                "example.com",
                user="user",
                password="pw",
                mechanisms=("PLAIN",),
                allowInsecureMechanisms=True,
            ),
        )
        self.assertEqual(
            self.connected("amqp://user:pw@example.com:5673:allowInsecurePlain=yes")[
                :2
            ],
            ("example.com", 5673),
        )

    def test_urlCredentialsTLS(self) -> None:
        """
        Credentials in an C{amqps://} URL need no C{allowInsecurePlain}.
        """
        endpoint = self.client("amqps://user:pw@example.com")
        self.assertEqual(
            repr(endpoint), "<AMQPClientEndpoint amqps://example.com:5671>"
        )
        self.assertEqual(
            endpoint.settings,
            _plainClient(
                "example.com",
                user="user",
                password="pw",
                mechanisms=("PLAIN",),
                allowInsecureMechanisms=True,
            ),
        )

    def test_urlPercentEncodedCredentials(self) -> None:
        """
        The URL form's user and password are percent-decoded.
        """
        endpoint = self.client("amqps://us%40er:p%3Aw@example.com")
        self.assertEqual(
            (endpoint.settings.user, endpoint.settings.password), ("us@er", "p:w")
        )

    def test_passwordNotShown(self) -> None:
        """
        The password appears neither in the endpoint's C{repr} nor in its
        settings' C{repr}.
        """
        endpoint = self.client("amqps://user:s3cr3t@example.com")
        self.assertNotIn("s3cr3t", repr(endpoint))
        self.assertNotIn("s3cr3t", repr(endpoint.settings))

    def test_userPasswordOptions(self) -> None:
        """
        C{user=} and C{password=} options give the credentials.
        """
        endpoint = self.client("amqps:example.com:user=u:password=p")
        self.assertEqual(
            endpoint.settings,
            _plainClient(
                "example.com",
                user="u",
                password="p",
                mechanisms=("PLAIN",),
                allowInsecureMechanisms=True,
            ),
        )

    def test_userPasswordOptionsWithURL(self) -> None:
        """
        C{user=} and C{password=} options may complete a URL without
        credentials.
        """
        endpoint = self.client("amqps://example.com:user=u:password=p")
        self.assertEqual(
            (endpoint.settings.user, endpoint.settings.password), ("u", "p")
        )

    def test_passwordOptionWithURLUser(self) -> None:
        """
        A C{password=} option completes a URL that gives only the user.
        """
        endpoint = self.client("amqps://u@example.com:password=p")
        self.assertEqual(
            (endpoint.settings.user, endpoint.settings.password), ("u", "p")
        )

    def test_userOnly(self) -> None:
        """
        A user without a password uses SASL PLAIN (with an empty password).
        """
        endpoint = self.client("amqps:example.com:user=u")
        self.assertEqual(endpoint.settings.user, "u")
        self.assertIsNone(endpoint.settings.password)
        self.assertEqual(endpoint.settings.mechanisms, ("PLAIN",))

    def test_allowInsecurePlainWithOptions(self) -> None:
        """
        C{allowInsecurePlain=yes} allows C{user=}/C{password=} over C{amqp:}.
        """
        endpoint = self.client(
            "amqp:example.com:user=u:password=p:allowInsecurePlain=yes"
        )
        self.assertEqual(
            endpoint.settings,
            _plainClient(
                "example.com",
                user="u",
                password="p",
                mechanisms=("PLAIN",),
                allowInsecureMechanisms=True,
            ),
        )

    def test_allowInsecurePlainSpellings(self) -> None:
        """
        C{allowInsecurePlain} accepts yes/true/1/on and no/false/0/off, in any
        case; C{no} leaves the insecure mechanisms refused.
        """
        for value in ["yes", "true", "1", "on", "YES", "True"]:
            endpoint = self.client(f"amqp:example.com:allowInsecurePlain={value}")
            self.assertTrue(endpoint.settings.allowInsecureMechanisms, value)
        for value in ["no", "false", "0", "off", "NO"]:
            endpoint = self.client(f"amqp:example.com:allowInsecurePlain={value}")
            self.assertFalse(endpoint.settings.allowInsecureMechanisms, value)

    def test_mechanisms(self) -> None:
        """
        C{mechanisms=} takes a comma-separated list, upper-cased.
        """
        endpoint = self.client("amqps:example.com:mechanisms=PLAIN,EXTERNAL")
        self.assertEqual(endpoint.settings.mechanisms, ("PLAIN", "EXTERNAL"))
        endpoint = self.client("amqps:example.com:mechanisms=anonymous")
        self.assertEqual(endpoint.settings.mechanisms, ("ANONYMOUS",))

    def test_mechanismsPlainInsecure(self) -> None:
        """
        C{mechanisms=PLAIN} over C{amqp:} is accepted with
        C{allowInsecurePlain=yes}.
        """
        endpoint = self.client(
            "amqp:example.com:mechanisms=PLAIN,EXTERNAL:allowInsecurePlain=yes"
        )
        self.assertEqual(endpoint.settings.mechanisms, ("PLAIN", "EXTERNAL"))
        self.assertTrue(endpoint.settings.allowInsecureMechanisms)

    def test_connectionOptions(self) -> None:
        """
        C{virtualHost=}, C{containerId=}, C{idleTimeout=} and
        C{maxFrameSize=} go into the connection's settings.
        """
        endpoint = self.client(
            "amqp:example.com:virtualHost=vh:containerId=c1:idleTimeout=2.5"
            ":maxFrameSize=4096"
        )
        self.assertEqual(
            endpoint.settings,
            _plainClient("vh", containerId="c1", idleTimeout=2.5, maxFrameSize=4096),
        )

    def test_idleTimeoutZero(self) -> None:
        """
        C{idleTimeout=0} is accepted (no idle timeout).
        """
        self.assertEqual(self.client("amqp:h:idleTimeout=0").settings.idleTimeout, 0)

    def test_timeout(self) -> None:
        """
        C{timeout=} is the TCP connect timeout (and that of the whole
        attempt, see L{ConnectTests}).
        """
        self.assertEqual(self.connected("amqp:example.com:timeout=5")[3], 5.0)
        self.assertEqual(self.connected("amqp:example.com:timeout=0.5")[3], 0.5)

    def test_bindAddress(self) -> None:
        """
        C{bindAddress=} is the local address to connect from, any port.
        """
        self.assertEqual(
            self.connected("amqp:example.com:bindAddress=10.0.0.1")[4],
            ("10.0.0.1", 0),
        )

    def test_allOptionsTogether(self) -> None:
        """
        The host, port, timeout and bind address all reach C{connectTCP}.
        """
        host, port, factory, timeout, bindAddress = self.connected(
            "amqp:host=example.com:port=1234:timeout=7:bindAddress=10.1.2.3"
        )
        self.assertEqual(
            (host, port, timeout, bindAddress),
            ("example.com", 1234, 7.0, ("10.1.2.3", 0)),
        )

    def test_trustRoots(self) -> None:
        """
        C{amqps:} accepts C{trustRoots=} (a PEM file of CA certificates);
        whether they are used is tested in L{TLSTests}.
        """
        pki = sharedPKI()
        endpoint = self.client(f"amqps:localhost:5671:trustRoots={pki.caCert}")
        self.assertEqual(repr(endpoint), "<AMQPClientEndpoint amqps://localhost:5671>")

    def test_clientCertificate(self) -> None:
        """
        C{amqps:} accepts C{certificate=} and C{privateKey=}, as two files or
        as one combined file.
        """
        pki = sharedPKI()
        self.client(
            f"amqps:localhost:certificate={pki.clientCert}:privateKey={pki.clientKey}"
        )
        self.client(f"amqps:localhost:certificate={pki.clientCombined}")

    def test_sni(self) -> None:
        """
        C{amqps:} accepts C{sni=}; whether it is used is tested in
        L{TLSTests}.
        """
        endpoint = self.client("amqps:127.0.0.1:sni=localhost")
        self.assertEqual(repr(endpoint), "<AMQPClientEndpoint amqps://127.0.0.1:5671>")
        self.assertEqual(endpoint.settings.hostname, "127.0.0.1")


class ClientStringRejectionTests(SynchronousTestCase):
    """
    Every rejected form of a client endpoint string raises L{ValueError} or
    L{TypeError} naming what is wrong.
    """

    def assertRejected(
        self, exception: type[Exception], description: str, *mentions: str
    ) -> None:
        """
        Assert that a client endpoint string is refused.

        @param exception: the exception expected.
        @param description: the endpoint string.
        @param mentions: texts the exception's message must contain.
        """
        error = self.assertRaises(
            exception, clientFromString, MemoryReactorClock(), description
        )
        for text in mentions:
            self.assertIn(text, str(error), description)

    def test_unknownOption(self) -> None:
        """
        An unknown option raises L{TypeError} naming it.
        """
        self.assertRejected(TypeError, "amqp:h:5672:bogus=1", "bogus")
        self.assertRejected(TypeError, "amqps:h:5672:bogus=1", "bogus")

    def test_serverOptions(self) -> None:
        """
        Options of server endpoints are unknown to client ones.
        """
        self.assertRejected(TypeError, "amqp:h:backlog=5", "backlog")
        self.assertRejected(TypeError, "amqp:h:interface=0.0.0.0", "interface")
        self.assertRejected(TypeError, "amqps:h:certKey=x.pem", "certKey")

    def test_tlsOptionWithoutTLS(self) -> None:
        """
        A TLS option with C{amqp:} raises L{TypeError} naming it and
        C{amqps}.
        """
        pki = sharedPKI()
        for option in [
            f"trustRoots={pki.caCert}",
            f"certificate={pki.clientCert}",
            f"privateKey={pki.clientKey}",
            "sni=localhost",
        ]:
            self.assertRejected(
                TypeError, f"amqp:h:5672:{option}", option.split("=")[0], "amqps"
            )

    def test_badPort(self) -> None:
        """
        A port that is not a number from 1 to 65535 raises L{ValueError}
        naming it.
        """
        self.assertRejected(ValueError, "amqp:h:99999", "99999")
        self.assertRejected(ValueError, "amqp:h:abc", "abc")
        self.assertRejected(ValueError, "amqp:h:0", "port")
        self.assertRejected(ValueError, "amqp:h:port=99999", "99999")
        self.assertRejected(ValueError, "amqp:h:port=abc", "abc")
        self.assertRejected(ValueError, "amqp://h:65536", "65536")

    def test_missingHost(self) -> None:
        """
        A string without a host raises L{ValueError}.
        """
        self.assertRejected(ValueError, "amqp:", "host")
        self.assertRejected(ValueError, "amqp:port=5672", "host")
        self.assertRejected(ValueError, "amqp:host=:port=5672", "host")

    def test_badHost(self) -> None:
        """
        A malformed host raises L{ValueError} naming it.
        """
        self.assertRejected(ValueError, "amqp:1.2.3.4.5:5672", "1.2.3.4.5")
        self.assertRejected(ValueError, "amqp:[::1", "[")

    def test_credentialsInClear(self) -> None:
        """
        Credentials (or PLAIN) over C{amqp:} without C{allowInsecurePlain}
        raise L{ValueError} pointing at C{allowInsecurePlain}.
        """
        for description in [
            "amqp:h:5672:user=u:password=p",
            "amqp:h:5672:user=u",
            "amqp:h:5672:mechanisms=PLAIN",
            "amqp://u:p@h",
            "amqp://u@h:5672",
            "amqp://u:p@h:allowInsecurePlain=no",
        ]:
            self.assertRejected(ValueError, description, "allowInsecurePlain")

    def test_badBoolean(self) -> None:
        """
        C{allowInsecurePlain=maybe} raises L{ValueError} naming the option
        and the value.
        """
        self.assertRejected(
            ValueError, "amqp:h:allowInsecurePlain=maybe", "allowInsecurePlain", "maybe"
        )

    def test_badIdleTimeout(self) -> None:
        """
        A negative or non-numeric C{idleTimeout} raises L{ValueError} naming
        it.
        """
        for value in ["-1", "abc", "nan", ""]:
            self.assertRejected(
                ValueError, f"amqp:h:idleTimeout={value}", "idleTimeout", repr(value)
            )

    def test_badMaxFrameSize(self) -> None:
        """
        A C{maxFrameSize} that is below 512 or not a whole number raises
        L{ValueError} naming it.
        """
        for value in ["100", "511", "1.5", "x", "-1"]:
            self.assertRejected(
                ValueError, f"amqp:h:maxFrameSize={value}", "maxFrameSize", repr(value)
            )

    def test_badTimeout(self) -> None:
        """
        A C{timeout} that is not a positive number raises L{ValueError}
        naming it.
        """
        for value in ["0", "-1", "x", "nan"]:
            self.assertRejected(
                ValueError, f"amqp:h:timeout={value}", "timeout", repr(value)
            )

    def test_privateKeyWithoutCertificate(self) -> None:
        """
        C{privateKey=} without C{certificate=} raises L{ValueError}.
        """
        pki = sharedPKI()
        self.assertRejected(
            ValueError,
            f"amqps:h:privateKey={pki.clientKey}",
            "privateKey",
            "certificate",
        )

    def test_certificateNotMatchingKey(self) -> None:
        """
        A C{privateKey=} that is not the key of C{certificate=} raises
        L{ValueError} naming both files.
        """
        pki = sharedPKI()
        self.assertRejected(
            ValueError,
            f"amqps:h:certificate={pki.wrongHostCert}:privateKey={pki.clientKey}",
            pki.clientKey,
            pki.wrongHostCert,
        )

    def test_certificateWithoutKey(self) -> None:
        """
        C{certificate=} alone, naming a file without a private key, raises
        L{ValueError}.
        """
        pki = sharedPKI()
        self.assertRejected(
            ValueError, f"amqps:h:certificate={pki.clientCert}", pki.clientCert
        )

    def test_missingFiles(self) -> None:
        """
        A C{trustRoots=} or C{certificate=} file that cannot be read raises
        L{ValueError} naming the path.
        """
        missing = self.mktemp()
        self.assertRejected(ValueError, f"amqps:h:trustRoots={missing}", missing)
        self.assertRejected(ValueError, f"amqps:h:certificate={missing}", missing)

    def test_trustRootsWithoutCertificate(self) -> None:
        """
        A C{trustRoots=} file holding no certificate raises L{ValueError}
        naming the path.
        """
        pki = sharedPKI()
        self.assertRejected(
            ValueError, f"amqps:h:trustRoots={pki.clientKey}", pki.clientKey
        )

    def test_urlWithPath(self) -> None:
        """
        A URL with a path raises L{ValueError} naming the path: an endpoint
        is not an address.
        """
        self.assertRejected(ValueError, "amqp://h:5672/queue", "queue")

    def test_hostTwice(self) -> None:
        """
        A host given both positionally and as C{host=} raises L{ValueError}
        naming both.
        """
        self.assertRejected(ValueError, "amqp:h1:5672:host=h2", "h1", "h2")
        self.assertRejected(ValueError, "amqp://h1:host=h2", "h1", "h2")

    def test_portTwice(self) -> None:
        """
        A port given both positionally and as C{port=} raises L{ValueError}.
        """
        self.assertRejected(ValueError, "amqp:h:5672:port=5673", "port")
        self.assertRejected(ValueError, "amqp://h:5672:port=5673", "port")
        self.assertRejected(ValueError, "amqp:[::1]:5672:port=5673", "port")

    def test_userTwice(self) -> None:
        """
        A user given both in the URL and as C{user=} raises L{ValueError}.
        """
        self.assertRejected(ValueError, "amqps://u:p@h:user=v", "user")

    def test_passwordTwice(self) -> None:
        """
        A password given both in the URL and as C{password=} raises
        L{ValueError}, like a user given twice does.
        """
        self.assertRejected(ValueError, "amqps://u:p@h:password=q", "password")

    def test_passwordWithoutUser(self) -> None:
        """
        A password without a user raises L{ValueError}.
        """
        self.assertRejected(ValueError, "amqps:h:password=p", "user")

    def test_extraPositional(self) -> None:
        """
        More positional parts than host and port raise L{ValueError}.
        """
        self.assertRejected(ValueError, "amqp:h:5672:5673")
        self.assertRejected(ValueError, "amqp:h:5672:x")


# Server endpoint strings --------------------------------------------------------


class ServerStringTests(_StringsMixin, SynchronousTestCase):
    """
    Every accepted form of C{amqp:} and C{amqps:} server endpoint strings.
    """

    def test_port(self) -> None:
        """
        C{amqp:PORT} listens on every IPv4 interface with a backlog of 50,
        offering SASL ANONYMOUS.
        """
        endpoint = self.server("amqp:5672")
        self.assertEqual(repr(endpoint), "<AMQPServerEndpoint amqp:5672:''>")
        settings = endpoint.settings
        assert settings.sasl is not None
        self.assertEqual(settings.sasl.offer(), ("ANONYMOUS",))
        self.assertEqual(
            replace(settings, sasl=None), ConnectionSettings(role="server")
        )
        port, factory, backlog, interface = self.listened("amqp:5672")
        self.assertEqual((port, backlog, interface), (5672, 50, ""))

    def test_anyPort(self) -> None:
        """
        C{amqp:0} listens on any free port.
        """
        self.assertEqual(self.listened("amqp:0")[0], 0)

    def test_portAndInterfaceOptions(self) -> None:
        """
        C{amqp:port=PORT:interface=ADDRESS} listens there.
        """
        port, factory, backlog, interface = self.listened(
            "amqp:port=5672:interface=0.0.0.0"
        )
        self.assertEqual((port, backlog, interface), (5672, 50, "0.0.0.0"))

    def test_ipv6Interface(self) -> None:
        r"""
        C{interface=\:\:} listens on every IPv6 interface.
        """
        endpoint = self.server(r"amqp:5672:interface=\:\:")
        self.assertEqual(repr(endpoint), "<AMQPServerEndpoint amqp:5672:'::'>")
        self.assertEqual(self.listened(r"amqp:5672:interface=\:\:")[3], "::")

    def test_ipv6InterfaceBrackets(self) -> None:
        r"""
        C{interface=[\:\:0]} listens on C{::0}: the endpoint strips the
        brackets.
        """
        self.assertEqual(self.listened(r"amqp:5672:interface=[\:\:0]")[3], "::0")
        self.assertEqual(self.listened(r"amqp:5672:interface=[\:\:1]")[3], "::1")

    def test_options(self) -> None:
        """
        C{backlog=}, C{containerId=}, C{idleTimeout=} and C{maxFrameSize=} are
        used.
        """
        description = (
            "amqp:5672:backlog=10:containerId=c:idleTimeout=5:maxFrameSize=1024"
        )
        endpoint = self.server(description)
        self.assertEqual(
            replace(endpoint.settings, sasl=None),
            ConnectionSettings(
                role="server",
                containerId="c",
                idleTimeout=5.0,
                maxFrameSize=1024,
            ),
        )
        self.assertEqual(self.listened(description)[2], 10)

    def test_tlsKeyAndCertificate(self) -> None:
        """
        C{amqps:PORT:privateKey=KEY:certKey=CERT} listens with TLS.
        """
        pki = sharedPKI()
        description = f"amqps:5671:privateKey={pki.serverKey}:certKey={pki.serverCert}"
        endpoint = self.server(description)
        self.assertEqual(repr(endpoint), "<AMQPServerEndpoint amqps:5671:''>")
        port, factory, backlog, interface = self.listened(description)
        self.assertEqual((port, backlog, interface), (5671, 50, ""))
        self.assertIsInstance(factory, TLSMemoryBIOFactory)

    def test_tlsCombined(self) -> None:
        """
        C{privateKey=} alone may name a file with both key and certificate.
        """
        pki = sharedPKI()
        description = f"amqps:5671:privateKey={pki.serverCombined}"
        self.assertEqual(
            repr(self.server(description)), "<AMQPServerEndpoint amqps:5671:''>"
        )
        self.assertIsInstance(self.listened(description)[1], TLSMemoryBIOFactory)

    def test_tlsExtraCertChain(self) -> None:
        """
        C{extraCertChain=} is accepted with C{amqps:}.
        """
        pki = sharedPKI()
        self.server(
            f"amqps:5671:privateKey={pki.serverCombined}:extraCertChain={pki.caCert}"
        )

    def test_protocolsConfigured(self) -> None:
        """
        Every protocol the server builds is configured as the server side,
        with the endpoint's settings and the reactor as clock.
        """
        endpoint = self.server("amqp:5672:containerId=srv")
        endpoint.listen(_peerFactory())
        factory = self.reactor.tcpServers[-1][1]
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.assertIsInstance(protocol, TestPeer)
        assert isinstance(protocol, TestPeer)
        self.assertEqual(protocol.settings, endpoint.settings)
        self.assertEqual(protocol.settings.role, "server")
        self.assertIs(protocol.clock, self.reactor)

    def test_containerIdStable(self) -> None:
        """
        Without a container id, one is generated per C{listen()}: every
        connection of that port gets the same.
        """
        endpoint = self.server("amqp:5672")
        endpoint.listen(_peerFactory())
        factory = self.reactor.tcpServers[-1][1]
        address = IPv4Address("TCP", "127.0.0.1", 40000)
        ids: set[str | None] = set()
        for _ in range(3):
            protocol = factory.buildProtocol(address)
            assert isinstance(protocol, TestPeer)
            ids.add(protocol.settings.containerId)
        self.assertEqual(len(ids), 1)
        [containerId] = ids
        self.assertTrue(str(containerId).startswith("amqptx-"))

    def test_nonAMQPFactory(self) -> None:
        """
        A server endpoint given a factory of non-AMQP protocols raises
        L{TypeError} naming L{amqptx.IAMQPProtocol} when a connection comes.
        """
        endpoint = self.server("amqp:5672")
        endpoint.listen(Factory.forProtocol(Protocol))
        factory = self.reactor.tcpServers[-1][1]
        error = self.assertRaises(
            TypeError,
            factory.buildProtocol,
            IPv4Address("TCP", "127.0.0.1", 40000),
        )
        self.assertIn("IAMQPProtocol", str(error))


class ServerStringRejectionTests(SynchronousTestCase):
    """
    Every rejected form of a server endpoint string raises L{ValueError} or
    L{TypeError} naming what is wrong.
    """

    def assertRejected(
        self, exception: type[Exception], description: str, *mentions: str
    ) -> None:
        """
        Assert that a server endpoint string is refused.

        @param exception: the exception expected.
        @param description: the endpoint string.
        @param mentions: texts the exception's message must contain.
        """
        error = self.assertRaises(
            exception, serverFromString, MemoryReactorClock(), description
        )
        for text in mentions:
            self.assertIn(text, str(error), description)

    def test_missingPort(self) -> None:
        """
        A string without a port raises L{ValueError}.
        """
        self.assertRejected(ValueError, "amqp:interface=0.0.0.0", "port")
        self.assertRejected(ValueError, "amqp:", "port")

    def test_twoPositionals(self) -> None:
        """
        Two positional parts raise L{ValueError}, which mentions how to escape
        an IPv6 interface (the usual cause).
        """
        self.assertRejected(ValueError, "amqp:5672:5673", "5673")
        self.assertRejected(ValueError, "amqp:5672:interface=[::0]", r"\:\:")

    def test_portTwice(self) -> None:
        """
        A port given positionally and as C{port=} raises L{ValueError}.
        """
        self.assertRejected(ValueError, "amqp:5672:port=5673", "port")

    def test_badPort(self) -> None:
        """
        A port that is not a number from 0 to 65535 raises L{ValueError}.
        """
        self.assertRejected(ValueError, "amqp:99999", "99999")
        self.assertRejected(ValueError, "amqp:abc", "abc")
        self.assertRejected(ValueError, "amqp:-1", "-1")

    def test_tlsWithoutKey(self) -> None:
        """
        C{amqps:} without C{privateKey=} raises L{ValueError} naming it.
        """
        self.assertRejected(ValueError, "amqps:5671", "privateKey")
        pki = sharedPKI()
        self.assertRejected(
            ValueError, f"amqps:5671:certKey={pki.serverCert}", "privateKey"
        )

    def test_unknownOption(self) -> None:
        """
        An unknown option raises L{TypeError} naming it; client options are
        unknown to servers.
        """
        self.assertRejected(TypeError, "amqp:5672:bogus=1", "bogus")
        self.assertRejected(TypeError, "amqp:5672:user=u", "user")
        self.assertRejected(TypeError, "amqps:5671:trustRoots=ca.pem", "trustRoots")

    def test_tlsOptionWithoutTLS(self) -> None:
        """
        A TLS option with C{amqp:} raises L{TypeError} naming it and
        C{amqps}.
        """
        pki = sharedPKI()
        self.assertRejected(
            TypeError, f"amqp:5672:privateKey={pki.serverKey}", "privateKey", "amqps"
        )
        self.assertRejected(
            TypeError, f"amqp:5672:certKey={pki.serverCert}", "certKey", "amqps"
        )

    def test_badBacklog(self) -> None:
        """
        A backlog that is not a whole number of at least 1 raises
        L{ValueError} naming it.
        """
        for value in ["0", "x", "1.5", "-3"]:
            self.assertRejected(
                ValueError, f"amqp:5672:backlog={value}", "backlog", repr(value)
            )

    def test_badNumbers(self) -> None:
        """
        A bad C{idleTimeout} or C{maxFrameSize} raises L{ValueError} naming
        it.
        """
        self.assertRejected(ValueError, "amqp:5672:idleTimeout=-1", "idleTimeout")
        self.assertRejected(ValueError, "amqp:5672:maxFrameSize=10", "maxFrameSize")

    def test_certificateNotMatchingKey(self) -> None:
        """
        A C{certKey=} whose certificate is not that of C{privateKey=} raises
        L{ValueError} naming the files.
        """
        pki = sharedPKI()
        self.assertRejected(
            ValueError,
            f"amqps:5671:privateKey={pki.serverKey}:certKey={pki.wrongHostCert}",
            pki.serverKey,
            pki.wrongHostCert,
        )

    def test_keyWithoutCertificate(self) -> None:
        """
        C{privateKey=} alone naming a file with no certificate raises
        L{ValueError} naming it.
        """
        pki = sharedPKI()
        self.assertRejected(
            ValueError, f"amqps:5671:privateKey={pki.serverKey}", pki.serverKey
        )

    def test_missingKeyFile(self) -> None:
        """
        A key file that cannot be read raises L{ValueError} naming it.
        """
        missing = self.mktemp()
        self.assertRejected(ValueError, f"amqps:5671:privateKey={missing}", missing)


# Interfaces ---------------------------------------------------------------------


class InterfaceTests(SynchronousTestCase):
    """
    The endpoints, parsers and plugins provide their interfaces.
    """

    def test_clientEndpoints(self) -> None:
        """
        Client endpoints, with and without TLS, provide
        L{IStreamClientEndpoint}.
        """
        reactor = MemoryReactorClock()
        for description in ["amqp:h", "amqps:h", "amqp://h:1"]:
            endpoint = clientFromString(reactor, description)
            self.assertTrue(verifyObject(IStreamClientEndpoint, endpoint))
        self.assertTrue(
            verifyObject(IStreamClientEndpoint, AMQPClientEndpoint(reactor, "h"))
        )

    def test_serverEndpoints(self) -> None:
        """
        Server endpoints, with and without TLS, provide
        L{IStreamServerEndpoint}.
        """
        reactor = MemoryReactorClock()
        pki = sharedPKI()
        for description in ["amqp:5672", f"amqps:5671:privateKey={pki.serverCombined}"]:
            endpoint = serverFromString(reactor, description)
            self.assertTrue(verifyObject(IStreamServerEndpoint, endpoint))
        self.assertTrue(
            verifyObject(IStreamServerEndpoint, AMQPServerEndpoint(reactor, 5672))
        )

    def test_parsers(self) -> None:
        """
        The plugin module's parsers provide the parser interfaces and
        L{IPlugin}, with the prefixes C{amqp} and C{amqps}.
        """
        for client, prefix in [
            (amqptx_plugins.amqpClientParser, "amqp"),
            (amqptx_plugins.amqpsClientParser, "amqps"),
        ]:
            self.assertTrue(
                verifyObject(IStreamClientEndpointStringParserWithReactor, client)
            )
            self.assertTrue(verifyObject(IPlugin, client))
            self.assertEqual(client.prefix, prefix)
        for server, prefix in [
            (amqptx_plugins.amqpServerParser, "amqp"),
            (amqptx_plugins.amqpsServerParser, "amqps"),
        ]:
            self.assertTrue(verifyObject(IStreamServerEndpointStringParser, server))
            self.assertTrue(verifyObject(IPlugin, server))
            self.assertEqual(server.prefix, prefix)

    def test_serviceMaker(self) -> None:
        """
        The plugin module's service maker provides L{IPlugin}.
        """
        self.assertTrue(verifyObject(IPlugin, amqptx_plugins.amqpListen))


# Connecting in memory -----------------------------------------------------------


class ConnectTests(SynchronousTestCase):
    """
    L{AMQPClientEndpoint.connect} fires once the AMQP connection is open, and
    fails with the documented errors otherwise.
    """

    # The host connected to: a name (through Twisted's HostnameEndpoint);
    # subclasses connect to numeric addresses (straight through connectTCP).
    host = "h"
    # How errors name it.
    described = "h:5672"

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()

    def connect(self, options: str = "") -> Deferred[IProtocol]:
        """
        Connect with a client endpoint string to L{host}, port 5672.

        @param options: the string's options, from C{":"}.
        @return: the Deferred of C{connect}.
        """
        endpoint: IStreamClientEndpoint = clientFromString(
            self.reactor, f"amqp:{self.host}:5672{options}"
        )
        return endpoint.connect(_connectionFactory())

    def listenAMQP(self, description: str = "amqp:5672") -> None:
        """
        Listen with a L{TestPeer} server endpoint.

        @param description: the server endpoint string.
        """
        serverFromString(self.reactor, description).listen(_peerFactory())

    def listenPlain(self, protocol: type[Protocol]) -> None:
        """
        Listen on port 5672 with a plain TCP endpoint (no AMQP).

        @param protocol: the server's protocol class.
        """
        TCP4ServerEndpoint(self.reactor, 5672).listen(Factory.forProtocol(protocol))

    def test_firesAfterOpen(self) -> None:
        """
        C{connect} fires with the protocol only once both AMQP Opens have been
        exchanged.
        """
        self.listenAMQP()
        d = self.connect()
        self.assertNoResult(d)
        pump = completeConnection(self.reactor)
        connection = self.successResultOf(d)
        self.assertIsInstance(connection, AMQPConnection)
        assert isinstance(connection, AMQPConnection)
        self.assertTrue(connection.opened)
        self.assertIs(connection.clock, self.reactor)
        self.assertTrue(pump.server.opened)

    def test_settingsReachThePeer(self) -> None:
        """
        The endpoint's settings are those the protocol opens with: the peer
        sees the client's container id, virtual host and frame size, and the
        client sees the server's container id.
        """
        self.listenAMQP("amqp:5672:containerId=server-1")
        endpoint = clientFromString(
            self.reactor,
            f"amqp:{self.host}:5672:containerId=client-1:virtualHost=vh"
            ":maxFrameSize=4096",
        )
        assert isinstance(endpoint, AMQPClientEndpoint)
        d = endpoint.connect(_connectionFactory())
        pump = completeConnection(self.reactor)
        connection = self.successResultOf(d)
        assert isinstance(connection, AMQPConnection)
        self.assertIs(connection.settings, endpoint.settings)
        peer = pump.server
        self.assertEqual(peer.connection.remote_container, "client-1")
        self.assertEqual(peer.connection.remote_hostname, "vh")
        self.assertEqual(peer.engine.transport.remote_max_frame_size, 4096)
        self.assertEqual(connection.connection.remote_container, "server-1")

    def test_timerStoppedWhenOpen(self) -> None:
        """
        Once the connection is open, the attempt's timeout no longer fires:
        time passing leaves the connection open.
        """
        self.listenAMQP()
        d = self.connect(":timeout=5")
        pump = completeConnection(self.reactor)
        connection = self.successResultOf(d)
        self.reactor.advance(60)
        pump.flush()
        assert isinstance(connection, AMQPConnection)
        self.assertTrue(connection.opened)
        self.assertFalse(pump.clientIO.disconnecting)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_timeoutBeforeTCP(self) -> None:
        """
        When the TCP connection is not made within C{timeout}, C{connect}
        fails with L{TimeoutError} and the attempt is stopped.
        """
        d = self.connect(":timeout=5")
        self.reactor.advance(4.9)
        self.assertNoResult(d)
        self.reactor.advance(0.2)
        failure = self.failureResultOf(d, TimeoutError)
        self.assertIn(self.described, str(failure.value))
        self.assertTrue(self.reactor.connectors[-1].stoppedConnecting)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_refused(self) -> None:
        """
        A refused TCP connection fails C{connect} with
        L{ConnectionRefusedError}.
        """
        d = self.connect()
        factory = self.reactor.tcpClients[-1][2]
        factory.clientConnectionFailed(
            self.reactor.connectors[-1], Failure(ConnectionRefusedError())
        )
        # HostnameEndpoint reports once it has no more addresses to try.
        self.reactor.advance(1)
        self.failureResultOf(d, ConnectionRefusedError)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_cancelBeforeTCP(self) -> None:
        """
        Cancelling before the TCP connection is made fails C{connect} with
        L{ConnectingCancelledError} and stops the attempt.
        """
        d = self.connect()
        d.cancel()
        failure = self.failureResultOf(d, ConnectingCancelledError)
        self.assertIn(self.described, str(failure.value))
        self.assertTrue(self.reactor.connectors[-1].stoppedConnecting)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_cancelBeforeOpen(self) -> None:
        """
        Cancelling after the TCP connection but before the AMQP Open fails
        C{connect} with L{ConnectingCancelledError} and drops the connection.
        """
        self.listenPlain(_Silent)
        d = self.connect()
        pump = completeConnection(self.reactor)
        self.assertNoResult(d)
        self.assertFalse(pump.clientIO.disconnecting)
        d.cancel()
        self.failureResultOf(d, ConnectingCancelledError)
        self.assertTrue(pump.clientIO.disconnecting)
        pump.flush()
        self.assertTrue(pump.serverIO.disconnected)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_timeoutBeforeOpen(self) -> None:
        """
        A server that accepts the TCP connection but never speaks fails
        C{connect} with L{TimeoutError} after C{timeout}, and the connection
        is dropped.
        """
        self.listenPlain(_Silent)
        d = self.connect(":timeout=2")
        pump = completeConnection(self.reactor)
        self.reactor.advance(1.9)
        self.assertNoResult(d)
        self.reactor.advance(0.2)
        self.failureResultOf(d, TimeoutError)
        self.assertTrue(pump.clientIO.disconnecting)
        pump.flush()
        self.assertTrue(pump.serverIO.disconnected)

    def test_notAMQP(self) -> None:
        """
        A server that answers in another protocol fails C{connect} with
        L{ProtocolError}, with a framing-error condition.
        """
        self.listenPlain(_HTTP)
        d = self.connect()
        pump = completeConnection(self.reactor)
        pump.flush()
        failure = self.failureResultOf(d, ProtocolError)
        assert isinstance(failure.value, ProtocolError)
        self.assertEqual(failure.value.condition, "amqp:connection:framing-error")
        self.assertTrue(pump.clientIO.disconnected)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_serverHangsUp(self) -> None:
        """
        A server that drops the TCP connection before the Open fails
        C{connect} with L{amqptx.AMQPConnectionLost}.
        """
        self.listenPlain(_Silent)
        d = self.connect()
        pump = completeConnection(self.reactor)
        pump.serverIO.loseConnection()
        pump.flush()
        self.failureResultOf(d, amqptx.AMQPConnectionLost)

    def test_nonAMQPFactory(self) -> None:
        """
        A factory of non-AMQP protocols fails C{connect} with L{TypeError}
        naming L{amqptx.IAMQPProtocol}, once the TCP connection is made: the
        endpoint's factory refuses to build the protocol.
        """
        self.listenAMQP()
        d = clientFromString(self.reactor, f"amqp:{self.host}:5672").connect(
            Factory.forProtocol(Protocol)
        )
        # What the reactor does when the TCP connection is made:
        factory = self.reactor.tcpClients[-1][2]
        self.assertIsNone(factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5672)))
        # HostnameEndpoint reports once it has no more addresses to try.
        self.reactor.advance(1)
        failure = self.failureResultOf(d, TypeError)
        self.assertIn("IAMQPProtocol", str(failure.value))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_noCommonMechanism(self) -> None:
        """
        A client that allows only SASL EXTERNAL, against a server offering
        only ANONYMOUS, fails C{connect} with L{AuthenticationFailed} and the
        condition C{amqp:unauthorized-access}.
        """
        self.listenAMQP()
        d = self.connect(":mechanisms=EXTERNAL")
        pump = completeConnection(self.reactor)
        pump.flush()
        failure = self.failureResultOf(d, AuthenticationFailed)
        assert isinstance(failure.value, AuthenticationFailed)
        self.assertEqual(failure.value.condition, "amqp:unauthorized-access")
        self.assertEqual(self.reactor.getDelayedCalls(), [])


# TLS in memory --------------------------------------------------------------------


class AddressConnectTests(ConnectTests):
    """
    L{ConnectTests} to a numeric IPv4 address: the endpoint connects
    straight through C{connectTCP}, without Twisted's endpoints.
    """

    host = "127.0.0.1"
    described = "127.0.0.1:5672"

    def test_straight(self) -> None:
        """
        The endpoint's own C{connectTCP} carries the bind address and no
        timeout (the attempt's own timer covers the TCP connection too), and
        the transport's protocol is the AMQP connection itself: no wrapper of
        Twisted's endpoints between them.
        """
        self.listenAMQP()
        d = self.connect(":timeout=7:bindAddress=127.0.0.2")
        _, port, _, timeout, bindAddress = self.reactor.tcpClients[-1]
        self.assertEqual((port, timeout, bindAddress), (5672, None, ("127.0.0.2", 0)))
        self.assertEqual(len(self.reactor.getDelayedCalls()), 1)
        pump = completeConnection(self.reactor)
        connection = self.successResultOf(d)
        self.assertIs(pump.clientIO.protocol, connection)

    def test_noLimit(self) -> None:
        """
        With no limit on the attempt (C{timeout=None}), the TCP connection
        still has one: C{connectTCP}'s, the default 30 s.
        """
        endpoint = AMQPClientEndpoint(self.reactor, self.host, timeout=None)
        endpoint.connect(_connectionFactory())
        self.assertEqual(self.reactor.tcpClients[-1][3], 30)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_notAnAMQPFactory(self) -> None:
        """
        A factory of protocols that are not L{IAMQPProtocol} fails the
        attempt with L{TypeError} naming it, and a factory that builds none
        with L{NoProtocol}; the connector gets no protocol (Twisted then
        drops the connection).
        """
        endpoint = clientFromString(self.reactor, f"amqp:{self.host}:5672")
        none = Factory()
        none.buildProtocol = lambda addr: None  # type: ignore[method-assign]
        for factory, error, named in [
            (Factory.forProtocol(Protocol), TypeError, "IAMQPProtocol"),
            (none, NoProtocol, ""),
        ]:
            d = endpoint.connect(factory)
            connecting = self.reactor.tcpClients[-1][2]
            self.assertIsNone(connecting.buildProtocol(None))
            self.assertIn(named, str(self.failureResultOf(d, error).value))
            self.assertEqual(self.reactor.getDelayedCalls(), [])


class IPv6AddressConnectTests(AddressConnectTests):
    """
    L{ConnectTests} to a numeric IPv6 address, straight through
    C{connectTCP} too.
    """

    host = "[::1]"
    described = "::1:5672"

    def test_straight(self) -> None:
        """
        The endpoint's own C{connectTCP} goes to the address without its
        brackets, and the transport's protocol is the AMQP connection.
        """
        self.listenAMQP()
        d = self.connect()
        self.assertEqual(self.reactor.tcpClients[-1][:2], ("::1", 5672))
        pump = completeConnection(self.reactor)
        self.assertIs(pump.clientIO.protocol, self.successResultOf(d))


class TLSTests(SynchronousTestCase):
    """
    C{amqps:} endpoints do TLS, verifying the server's certificate.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.pki: PKI = sharedPKI()

    def attempt(
        self, serverKey: str, serverCert: str, client: str
    ) -> Deferred[IProtocol]:
        """
        Listen with TLS, connect, and move every byte there is to move.

        @param serverKey: the server's private key file.
        @param serverCert: the server's certificate file.
        @param client: the client endpoint string.
        @return: the Deferred of C{connect}.
        """
        serverFromString(
            self.reactor,
            f"amqps:5671:privateKey={serverKey}:certKey={serverCert}",
        ).listen(_peerFactory())
        endpoint: IStreamClientEndpoint = clientFromString(self.reactor, client)
        d = endpoint.connect(_connectionFactory())
        pump = completeConnection(self.reactor)
        self.addCleanup(self.disconnect, pump)
        pump.flush()
        return d

    def disconnect(self, pump: IOPump) -> None:
        """
        Drop the connection, so that no TLS write stays scheduled on the
        clock.

        @param pump: the connection's pump.
        """
        pump.clientIO.abortConnection()
        pump.flush()

    def test_trusted(self) -> None:
        """
        A server certificate issued for the host by a trusted authority is
        accepted, and C{connect} fires with the open connection.
        """
        d = self.attempt(
            self.pki.serverKey,
            self.pki.serverCert,
            f"amqps:localhost:5671:trustRoots={self.pki.caCert}",
        )
        self.assertIsInstance(self.successResultOf(d), AMQPConnection)

    def test_trustedIPAddress(self) -> None:
        """
        A server certificate with the address connected to as an IP SAN is
        accepted.
        """
        d = self.attempt(
            self.pki.serverKey,
            self.pki.serverCert,
            f"amqps:127.0.0.1:5671:trustRoots={self.pki.caCert}",
        )
        self.assertIsInstance(self.successResultOf(d), AMQPConnection)

    def test_sniSelectsTheNameVerified(self) -> None:
        """
        With C{sni=}, the server's certificate is verified for that name
        instead of the host connected to.
        """
        d = self.attempt(
            self.pki.wrongHostKey,
            self.pki.wrongHostCert,
            f"amqps:localhost:5671:trustRoots={self.pki.caCert}:sni=wrong.example",
        )
        self.assertIsInstance(self.successResultOf(d), AMQPConnection)

    def test_untrusted(self) -> None:
        """
        A server certificate from an authority not in C{trustRoots} fails
        C{connect} with L{TLSError}.
        """
        d = self.attempt(
            self.pki.serverKey,
            self.pki.serverCert,
            f"amqps:localhost:5671:trustRoots={self.pki.wrongCA}",
        )
        self.failureResultOf(d, TLSError)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_wrongHost(self) -> None:
        """
        A trusted server certificate for another host name fails C{connect}
        with L{TLSError}.
        """
        d = self.attempt(
            self.pki.wrongHostKey,
            self.pki.wrongHostCert,
            f"amqps:localhost:5671:trustRoots={self.pki.caCert}",
        )
        failure = self.failureResultOf(d, TLSError)
        self.assertIn("localhost", str(failure.value))

    def test_sniMismatch(self) -> None:
        """
        With C{sni=} naming another host than the certificate's, C{connect}
        fails with L{TLSError}: the name verified is the C{sni} one.
        """
        d = self.attempt(
            self.pki.serverKey,
            self.pki.serverCert,
            f"amqps:localhost:5671:trustRoots={self.pki.caCert}:sni=wrong.example",
        )
        failure = self.failureResultOf(d, TLSError)
        self.assertIn("wrong.example", str(failure.value))

    def test_tlsErrorIsConnectError(self) -> None:
        """
        L{TLSError} is a L{twisted.internet.error.ConnectError}, like the
        other failures to connect.
        """
        from twisted.internet.error import ConnectError

        self.assertTrue(issubclass(TLSError, ConnectError))


# amqptx.connect --------------------------------------------------------------------


class ConnectFunctionTests(SynchronousTestCase):
    """
    L{amqptx.connect} opens a connection from a URL or an endpoint.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        serverFromString(self.reactor, "amqp:5672").listen(_peerFactory())

    def test_url(self) -> None:
        """
        A URL string gives a Deferred that fires with an open
        L{AMQPConnection}.
        """
        d = amqptx.connect(self.reactor, "amqp://127.0.0.1:5672")
        self.assertNoResult(d)
        completeConnection(self.reactor)
        connection = self.successResultOf(d)
        self.assertIsInstance(connection, AMQPConnection)
        self.assertTrue(connection.opened)

    def test_parsedURL(self) -> None:
        """
        An L{amqptx.AMQPURL} is accepted like its text.
        """
        d = amqptx.connect(self.reactor, amqptx.parseURL("amqp://example.com:5672"))
        completeConnection(self.reactor)
        self.assertIsInstance(self.successResultOf(d), AMQPConnection)

    def test_endpoint(self) -> None:
        """
        A client endpoint is connected with a factory of L{AMQPConnection}s.
        """
        endpoint = clientFromString(self.reactor, "amqp:example.com:5672")
        d = amqptx.connect(self.reactor, endpoint)
        completeConnection(self.reactor)
        self.assertIsInstance(self.successResultOf(d), AMQPConnection)

    def test_quiet(self) -> None:
        """
        The factory of each connection does not log its start and stop, as
        Twisted's factories do by default: one line per connection each.
        """
        factories: list[IProtocolFactory] = []

        @implementer(IStreamClientEndpoint)
        class Recording:
            def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
                factories.append(factory)
                return Deferred()

        amqptx.connect(self.reactor, Recording())
        [factory] = factories
        with capturedLogs() as events:
            factory.doStart()
            factory.doStop()
        self.assertEqual(events, [])

    def test_urlOptions(self) -> None:
        """
        Keyword options go to the endpoint made from the URL.
        """
        d = amqptx.connect(self.reactor, "amqp://example.com:5673", timeout=2)
        self.reactor.advance(2)
        self.failureResultOf(d, TimeoutError)

    def test_endpointWithOptions(self) -> None:
        """
        Options with an endpoint raise L{TypeError}.
        """
        endpoint = clientFromString(self.reactor, "amqp:example.com:5672")
        self.assertRaises(TypeError, amqptx.connect, self.reactor, endpoint, timeout=1)

    def test_unknownOption(self) -> None:
        """
        An unknown option with a URL raises L{TypeError} naming it.
        """
        error = self.assertRaises(
            TypeError, amqptx.connect, self.reactor, "amqp://h", bogus=1
        )
        self.assertIn("bogus", str(error))

    def test_badScheme(self) -> None:
        """
        A URL of another scheme raises L{ValueError} naming it.
        """
        error = self.assertRaises(ValueError, amqptx.connect, self.reactor, "http://x")
        self.assertIn("http", str(error))

    def test_credentialsInClear(self) -> None:
        """
        Credentials in an C{amqp://} URL raise L{ValueError}, as with
        endpoint strings.
        """
        error = self.assertRaises(
            ValueError, amqptx.connect, self.reactor, "amqp://u:p@h"
        )
        self.assertIn("allowInsecurePlain", str(error))

    def test_urlWithPath(self) -> None:
        """
        A URL with a path is refused, as in an endpoint string: an endpoint
        has no address.
        """
        error = self.assertRaises(
            ValueError, amqptx.connect, self.reactor, "amqp://h:5672/queue"
        )
        self.assertIn("queue", str(error))


class URLFormSecretTests(SynchronousTestCase):
    """
    Errors about the URL form of an endpoint string do not quote passwords.
    """

    def test_equalsInPassword(self) -> None:
        """
        An unencoded C{=} in the password (Twisted splits the string there)
        gives a L{ValueError} that tells to percent-encode it and quotes no
        part of the password.
        """
        error = self.assertRaises(
            ValueError,
            clientFromString,
            MemoryReactorClock(),
            "amqps://user:se=cret@host:5671",
        )
        self.assertIn("%3D", str(error))
        for secret in ("se", "cret@host"):
            self.assertNotIn(repr(secret), str(error))
        self.assertNotIn("cret", str(error))


class ClientServiceCompositionTests(SynchronousTestCase):
    """
    amqptx endpoints work under Twisted's C{ClientService}.
    """

    def test_clientService(self) -> None:
        """
        C{ClientService} over an amqptx endpoint gets the open connection
        from C{whenConnected}.
        """
        from twisted.application.internet import ClientService

        reactor = MemoryReactorClock()
        serverFromString(reactor, "amqp:5672").listen(_peerFactory())
        service = ClientService(
            clientFromString(reactor, "amqp:127.0.0.1:5672"),
            _connectionFactory(),
            clock=reactor,
        )
        service.startService()
        self.addCleanup(service.stopService)
        connected = service.whenConnected()
        completeConnection(reactor)
        self.assertIsInstance(self.successResultOf(connected), AMQPConnection)
