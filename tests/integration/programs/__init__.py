# -*- test-case-name: tests.integration.test_container_parity -*-
"""
Classic proton example programs, each runnable with proton's C{Container} or
with amqptx's (C{--container proton|amqptx}); see
L{tests.integration.test_container_parity}.
"""
