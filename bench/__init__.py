"""
amqptx's benchmarks: amqptx side by side with python-qpid-proton's own
C{Container} (and RabbitMQ), each contender in processes of its own.

Run them with C{python -m bench} (see C{bench/README.md}).
"""
