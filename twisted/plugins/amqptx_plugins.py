"""
amqptx's Twisted plugins: the C{amqp:}, C{amqps:} and C{amqp-failover:}
endpoint-string parsers and the C{twistd amqp-listen} service maker.

Only instances live here, and nothing imports proton: Twisted imports this
module whenever any program looks for plugins.
"""

from twisted.application.service import ServiceMaker

from amqptx._failover import AMQPFailoverParser
from amqptx._parsers import AMQPClientParser, AMQPServerParser

amqpClientParser = AMQPClientParser("amqp")
amqpsClientParser = AMQPClientParser("amqps")
amqpServerParser = AMQPServerParser("amqp")
amqpsServerParser = AMQPServerParser("amqps")
amqpFailoverParser = AMQPFailoverParser()

amqpListen = ServiceMaker(
    "amqp-listen",
    "amqptx._tap",
    "An AMQP 1.0 server (in-memory queues) built on amqptx.",
    "amqp-listen",
)
