# -*- test-case-name: tests.test_broker -*-
"""
The server behind C{twistd amqp-listen}: in-memory queues any AMQP 1.0 client
can send to and receive from.
"""

from ._broker import Broker, BrokerProtocol, Queue

__all__ = ["Broker", "BrokerProtocol", "Queue"]
