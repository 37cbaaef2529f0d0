# -*- test-case-name: tests.test_exports -*-
"""
amqptx: AMQP 1.0 for Twisted, on python-qpid-proton's protocol engine.

The public names below are loaded on first use, so that importing C{amqptx}
(which Twisted's plugin system does to find the C{amqp:} endpoint parsers)
does not load proton.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._client import AMQPConnection, Outcome, ReceivedMessage, Receiver, Sender
    from ._connect import connect
    from ._container import Container, ContainerService, SSLDomain
    from ._endpoints import AMQPClientEndpoint, AMQPServerEndpoint
    from ._engine import ConnectionSettings
    from ._errors import (
        AMQPConnectionLost,
        AMQPError,
        AuthenticationFailed,
        ConnectionClosed,
        DeliveryNotAccepted,
        LinkDetached,
        MessageModified,
        MessageRejected,
        MessageReleased,
        OpenRefused,
        ProtocolError,
        RequestTimedOut,
        SendQueueFull,
        SessionEnded,
        TLSError,
    )
    from ._failover import AMQPFailoverEndpoint, FailoverExhausted, failoverEndpoint
    from ._interfaces import IAMQPProtocol
    from ._protocol import AMQPProtocol
    from ._reconnect import (
        AMQPClientService,
        Backoff,
        Delays,
        EndpointAddress,
        EndpointConnector,
        IReconnectPolicy,
        ReconnectingAMQPClientFactory,
        reconnectPolicy,
    )
    from ._url import AMQPURL, parseURL

__version__ = "0.1.0.dev0"

_WHERE = {
    "AMQPClientEndpoint": "_endpoints",
    "AMQPClientService": "_reconnect",
    "AMQPConnection": "_client",
    "AMQPConnectionLost": "_errors",
    "AMQPError": "_errors",
    "AMQPFailoverEndpoint": "_failover",
    "AMQPProtocol": "_protocol",
    "AMQPServerEndpoint": "_endpoints",
    "AMQPURL": "_url",
    "Container": "_container",
    "ContainerService": "_container",
    "AuthenticationFailed": "_errors",
    "Backoff": "_reconnect",
    "connect": "_connect",
    "ConnectionClosed": "_errors",
    "ConnectionSettings": "_engine",
    "Delays": "_reconnect",
    "DeliveryNotAccepted": "_errors",
    "EndpointAddress": "_reconnect",
    "EndpointConnector": "_reconnect",
    "failoverEndpoint": "_failover",
    "FailoverExhausted": "_failover",
    "IAMQPProtocol": "_interfaces",
    "IReconnectPolicy": "_reconnect",
    "LinkDetached": "_errors",
    "MessageModified": "_errors",
    "MessageRejected": "_errors",
    "MessageReleased": "_errors",
    "OpenRefused": "_errors",
    "Outcome": "_client",
    "parseURL": "_url",
    "ProtocolError": "_errors",
    "ReceivedMessage": "_client",
    "Receiver": "_client",
    "ReconnectingAMQPClientFactory": "_reconnect",
    "reconnectPolicy": "_reconnect",
    "Sender": "_client",
    "RequestTimedOut": "_errors",
    "SSLDomain": "_container",
    "SendQueueFull": "_errors",
    "SessionEnded": "_errors",
    "TLSError": "_errors",
}

__all__ = [
    "AMQPClientEndpoint",
    "AMQPClientService",
    "AMQPConnection",
    "AMQPConnectionLost",
    "AMQPError",
    "AMQPFailoverEndpoint",
    "AMQPProtocol",
    "AMQPServerEndpoint",
    "AMQPURL",
    "Container",
    "ContainerService",
    "AuthenticationFailed",
    "Backoff",
    "connect",
    "ConnectionClosed",
    "ConnectionSettings",
    "Delays",
    "DeliveryNotAccepted",
    "EndpointAddress",
    "EndpointConnector",
    "failoverEndpoint",
    "FailoverExhausted",
    "IAMQPProtocol",
    "IReconnectPolicy",
    "LinkDetached",
    "MessageModified",
    "MessageRejected",
    "MessageReleased",
    "OpenRefused",
    "Outcome",
    "parseURL",
    "ProtocolError",
    "ReceivedMessage",
    "Receiver",
    "ReconnectingAMQPClientFactory",
    "reconnectPolicy",
    "Sender",
    "RequestTimedOut",
    "SSLDomain",
    "SendQueueFull",
    "SessionEnded",
    "TLSError",
]


def __getattr__(name: str) -> Any:
    """
    Load a public name from the private module that defines it.

    @param name: the attribute asked for.
    @return: its value.
    @raise AttributeError: for a name amqptx does not have.
    """
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'amqptx' has no attribute {name!r}")
    value = getattr(import_module(f"amqptx.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
