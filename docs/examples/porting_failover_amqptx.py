# ruff: noqa: D101, D102, D107
"""
AMQ Python's "Configuring failover" on a ``Container``: proton's in
``porting_failover_proton.py``, amqptx's in ``porting_failover_amqptx.py``,
the same program but for the import of ``Container``.

The URLs are tried in turn until one connects.  Give it URLs
(``amqp://127.0.0.1:5672 amqp://127.0.0.1:5673``, say); without any, it
connects to ``amqp://alpha.example.com`` or ``amqp://beta.example.com``.
"""

import sys

from proton.handlers import MessagingHandler

from amqptx import Container


class ExampleHandler(MessagingHandler):
    def __init__(self, *urls):
        super().__init__()
        self.urls = list(urls) or [
            "amqp://alpha.example.com",
            "amqp://beta.example.com",
        ]

    def on_start(self, event):
        event.container.connect(urls=self.urls)

    def on_transport_error(self, event):
        print("connection failed:", event.transport.condition.name)

    def on_connection_opened(self, event):
        print("open:", event.connection.connected_address)
        event.connection.close()


Container(ExampleHandler(*sys.argv[1:])).run()
