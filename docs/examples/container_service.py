# ruff: noqa: D101, D102, D107
"""
amqptx's ``Container`` inside a Twisted program whose reactor runs already:
a ``ContainerService`` starts it (instead of ``run()``), and the program's
own Twisted code goes on beside it.

The container's handler sends a message to the address ``examples``; the
Deferred API receives it.  Run ``twistd -n amqp-listen`` first, then
``python docs/examples/container_service.py`` (or give the URL of another
server as the first argument).
"""

import sys

from proton import Message
from proton.handlers import MessagingHandler
from twisted.internet import task

from amqptx import Container, ContainerService, connect


class Send(MessagingHandler):
    def __init__(self, url, address):
        super().__init__()
        self.url = url
        self.address = address

    def on_start(self, event):
        connection = event.container.connect(self.url)
        event.container.create_sender(connection, self.address)

    def on_sendable(self, event):
        event.sender.send(Message(body="Hello from the Container"))
        event.sender.close()

    def on_accepted(self, event):
        print("the container's message was accepted")
        event.connection.close()


async def main(reactor, url="amqp://localhost:5672"):
    """
    Start the container as a service, receive its message, stop it.
    """
    service = ContainerService(Container(Send(url, "examples")))
    service.startService()  # on_start: the container connects and sends

    connection = await connect(reactor, url)
    receiver = await connection.receiver("examples")
    received = await receiver.get()
    print("received:", received.body)
    received.accept()
    await connection.close()

    await service.stopService()  # fires once its connections are gone


task.react(main, sys.argv[1:])
