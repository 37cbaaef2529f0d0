# -*- test-case-name: tests.test_broker -*-
"""
The server behind C{twistd amqp-listen}: queues and topics any AMQP 1.0
client can send to and receive from, in memory, with durable queues and
messages kept in a store (L{SQLiteStore}) when one is given.
"""

from ._broker import Broker, BrokerProtocol
from ._config import BrokerConfig
from ._nodes import Queue, Topic
from ._permissions import Permissions
from ._sqlite import SQLiteStore
from ._store import IMessageStore, Recovery, StoredMessage, StoreError, StoreService

__all__ = [
    "Broker",
    "BrokerConfig",
    "BrokerProtocol",
    "IMessageStore",
    "Permissions",
    "Queue",
    "Recovery",
    "SQLiteStore",
    "StoreError",
    "StoreService",
    "StoredMessage",
    "Topic",
]
