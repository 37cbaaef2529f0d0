# -*- test-case-name: tests.test_broker -*-
"""
The server behind C{twistd amqp-listen}: in-memory queues and topics any
AMQP 1.0 client can send to and receive from.
"""

from ._broker import Broker, BrokerProtocol
from ._config import BrokerConfig
from ._nodes import Queue, Topic
from ._permissions import Permissions

__all__ = ["Broker", "BrokerConfig", "BrokerProtocol", "Permissions", "Queue", "Topic"]
