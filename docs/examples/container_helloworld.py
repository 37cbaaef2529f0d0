# ruff: noqa: D101, D102, D107
"""
proton's "Hello World" on amqptx's ``Container``: the program of proton's
examples, with ``from amqptx import Container`` instead of
``from proton.reactor import Container``.

It sends "Hello World!" to the address ``examples`` and receives it back.
Run ``twistd -n amqp-listen`` first, then
``python docs/examples/container_helloworld.py`` (or give the URL of another
server as the first argument).
"""

import sys

from proton import Message
from proton.handlers import MessagingHandler

from amqptx import Container


class HelloWorld(MessagingHandler):
    def __init__(self, url, address):
        super().__init__()
        self.url = url
        self.address = address

    def on_start(self, event):
        connection = event.container.connect(self.url)
        event.container.create_receiver(connection, self.address)
        event.container.create_sender(connection, self.address)

    def on_sendable(self, event):
        event.sender.send(Message(body="Hello World!"))
        event.sender.close()

    def on_message(self, event):
        print(event.message.body)
        event.connection.close()


url = sys.argv[1] if len(sys.argv) > 1 else "amqp://localhost:5672"
Container(HelloWorld(url, "examples")).run()
