# ruff: noqa: D101, D102, D107
"""
AMQ Python's "Accepting incoming connections" on a ``Container``: proton's in
``porting_listen_proton.py``, amqptx's in ``porting_listen_amqptx.py``, the
same program but for the import of ``Container``.

The handler listens when the container starts, says when a connection comes
in, and stops listening once that connection has closed, so that the program
ends.  It listens on every IPv4 interface, port 5672, unless given another
address (``127.0.0.1:5673``, or ``[::1]:5673`` with amqptx's container:
proton's listens on IPv4 only).
"""

import sys

from proton.handlers import MessagingHandler

from amqptx import Container


class ExampleHandler(MessagingHandler):
    def __init__(self, url="0.0.0.0"):
        super().__init__()
        self.url = url

    def on_start(self, event):
        self.acceptor = event.container.listen(self.url)
        print("listening on", self.url)

    def on_connection_opened(self, event):
        print("new incoming connection")

    def on_connection_closed(self, event):
        print("connection closed; no longer listening")
        self.acceptor.close()


Container(ExampleHandler(*sys.argv[1:])).run()
