"""
What each user may do on a server run with the permissions of
``docs/examples/permissions.txt``.

Run the server with users alice (password ``secret``) and bob
(``hunter2``), anonymous clients allowed, and those permissions::

    twistd -n amqp-listen --auth memory:alice:secret:bob:hunter2 \\
        --allow-anonymous --allow-insecure-plain \\
        --permissions docs/examples/permissions.txt

then ``python docs/examples/permissions.py`` (or give a client endpoint
string, without credentials, as the first argument).  The passwords go in
clear (``allowInsecurePlain=yes``, ``--allow-insecure-plain``): fine on
127.0.0.1, not elsewhere; use ``amqps`` there.
"""

import sys

from twisted.internet import defer, task
from twisted.internet.endpoints import clientFromString
from twisted.internet.protocol import Factory

from amqptx import AMQPConnection, LinkDetached

USERS = [("alice", "secret"), ("bob", "hunter2"), (None, None)]
ATTEMPTS = [
    ("send", "orders"),
    ("receive", "orders"),
    ("send", "chat/lobby"),
    ("send", "topic/news"),
    ("receive", "topic/news"),
]


async def main(reactor, description="amqp:localhost:5672"):
    """
    Connect as each user in turn, and try to attach links.
    """
    for user, password in USERS:
        if user is None:
            who, login = "anonymous", description
        else:
            who = user
            login = f"{description}:user={user}:password={password}"
            login += ":allowInsecurePlain=yes"
        endpoint = clientFromString(reactor, login)
        connection = await endpoint.connect(Factory.forProtocol(AMQPConnection))
        for right, address in ATTEMPTS:
            attach = connection.sender if right == "send" else connection.receiver
            try:
                link = await attach(address)
            except LinkDetached as e:
                print(f"{who} may not {right} {address}: {e.condition}")
            else:
                print(f"{who} may {right} {address}")
                await link.close()
        await connection.close()


if __name__ == "__main__":
    task.react(
        lambda reactor: defer.Deferred.fromCoroutine(main(reactor, *sys.argv[1:]))
    )
