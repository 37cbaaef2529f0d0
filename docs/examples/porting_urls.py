"""
The connection URLs of AMQ Python's "Network connections" chapter, read by
proton and by amqptx.

``Container.connect()`` takes these URLs with either container; the Twisted
ways to connect (``amqptx.connect``, ``AMQPClientEndpoint.fromURL``,
``clientFromString``) take them too, and ``clientFromString`` also takes the
shorter endpoint strings printed here.  Nothing is connected to:
``python docs/examples/porting_urls.py`` prints what each URL means.
"""

from proton import Url
from twisted.internet import reactor
from twisted.internet.endpoints import clientFromString

from amqptx import AMQPClientEndpoint, parseURL

URLS = [
    "amqps://example.com",
    "amqps://example.net:56720",
    "amqp://127.0.0.1",
    "amqp://[::1]:2000",
]

for text in URLS:
    # proton: the port of a URL without one is the scheme's (5672, 5671).
    url = Url(text)
    print(f"{text}: proton {url.scheme} {url.host} {int(url.port)}")

    # amqptx: an AMQPURL, with the same fields.
    parsed = parseURL(text)
    print(f"{text}: amqptx {parsed.scheme} {parsed.host} {parsed.port}")

    # Twisted: an endpoint from the URL, or from an endpoint string.
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    string = f"{parsed.scheme}:{host}:{parsed.port}"
    print(f"{text}: {AMQPClientEndpoint.fromURL(reactor, text)}")
    print(f"{string}: {clientFromString(reactor, string)}")
