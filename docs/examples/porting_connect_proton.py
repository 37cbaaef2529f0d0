# ruff: noqa: D101, D102, D107
"""
AMQ Python's "Creating outgoing connections" on a ``Container``: proton's in
``porting_connect_proton.py``, amqptx's in ``porting_connect_amqptx.py``, the
same program but for the import of ``Container``.

The handler connects when the container starts, says so once the connection
is open, and closes it, so that the program ends.  Give it a URL
(``amqp://127.0.0.1:5672``, say); without one, it connects to
``amqp://example.com``.
"""

import sys

from proton.handlers import MessagingHandler
from proton.reactor import Container


class ExampleHandler(MessagingHandler):
    def __init__(self, url="amqp://example.com"):
        super().__init__()
        self.url = url

    def on_start(self, event):
        event.container.connect(self.url)

    def on_connection_opened(self, event):
        print("open:", event.connection.connected_address)
        event.connection.close()


Container(ExampleHandler(*sys.argv[1:])).run()
