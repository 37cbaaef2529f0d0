"""Tests for amqptx."""
