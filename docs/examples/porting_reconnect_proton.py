# ruff: noqa: D101, D102, D107
"""
AMQ Python's "Configuring reconnect", second part, on a ``Container``:
proton's in ``porting_reconnect_proton.py``, amqptx's in
``porting_reconnect_amqptx.py``, the same program but for the import of
``Container``.

A policy object chooses the delays between attempts: ``ExampleReconnect``
waits 0.1 second, then twice as long each time, at most 10 seconds, and
prints each delay it gives.  Start the program with nothing listening at its
URL, then start a server there: the program connects once the server is up.
Give it a URL (``amqp://127.0.0.1:5672``, say); without one, it connects to
``amqp://example.com``.
"""

import sys

from proton.handlers import MessagingHandler
from proton.reactor import Container


class ExampleReconnect:
    def __init__(self):
        self.delay = 0

    def reset(self):
        self.delay = 0

    def next(self):
        if self.delay == 0:
            self.delay = 0.1
        else:
            self.delay = min(10, 2 * self.delay)
        print("next delay:", self.delay)
        return self.delay


class ExampleHandler(MessagingHandler):
    def __init__(self, url="amqp://example.com"):
        super().__init__()
        self.url = url

    def on_start(self, event):
        event.container.connect(self.url, reconnect=ExampleReconnect())

    def on_transport_error(self, event):
        print("connection failed:", event.transport.condition.name)

    def on_connection_opened(self, event):
        print("open:", event.connection.connected_address)
        event.connection.close()


Container(ExampleHandler(*sys.argv[1:])).run()
