"""Integration tests against a real AMQP 1.0 broker."""
