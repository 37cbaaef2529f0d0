# ruff: noqa: D101, D102, D107
"""
AMQ Python's "Configuring reconnect", first part, on a ``Container``:
proton's in ``porting_noreconnect_proton.py``, amqptx's in
``porting_noreconnect_amqptx.py``, the same program but for the import of
``Container``.

With ``reconnect=False`` there is one attempt: when it fails, the handler
hears of it and the program ends.  Give it a URL (``amqp://127.0.0.1:5672``,
say); without one, it connects to ``amqp://example.com``.
"""

import sys

from proton.handlers import MessagingHandler
from proton.reactor import Container


class ExampleHandler(MessagingHandler):
    def __init__(self, url="amqp://example.com"):
        super().__init__()
        self.url = url

    def on_start(self, event):
        event.container.connect(self.url, reconnect=False)

    def on_transport_error(self, event):
        print("connection failed:", event.transport.condition.name)

    def on_connection_opened(self, event):
        print("open:", event.connection.connected_address)
        event.connection.close()


Container(ExampleHandler(*sys.argv[1:])).run()
