# -*- test-case-name: tests.test_broker_permissions -*-
"""
Tests for L{amqptx.broker.Permissions}: the file format, and how the broker
enforces it for PLAIN users and anonymous clients.
"""

from __future__ import annotations

from proton import Message
from twisted.cred.checkers import ANONYMOUS
from twisted.trial.unittest import SynchronousTestCase

from amqptx import MessageRejected
from amqptx.broker import BrokerConfig, Permissions
from tests.test_broker import BrokerMixin

RULES = """\
# who      right    addresses
alice      send     orders  "quoted address"
alice      receive  replies.*
bob        all      orders
*          send     public/*    # every authenticated user
anonymous  receive  public/*
'CN=client, O=Example'  all  devices/?
"""


class ParseTests(SynchronousTestCase):
    """
    L{Permissions.parse} and L{Permissions.fromFile}.
    """

    def setUp(self) -> None:
        self.permissions = Permissions.parse(RULES)

    def test_users(self) -> None:
        """
        A named user may do what their rules allow, and nothing else.
        """
        allows = self.permissions.allows
        self.assertTrue(allows(b"alice", "send", "orders"))
        self.assertTrue(allows(b"alice", "send", "quoted address"))
        self.assertFalse(allows(b"alice", "receive", "orders"))
        self.assertTrue(allows(b"alice", "receive", "replies.1"))
        self.assertFalse(allows(b"alice", "receive", "replies"))
        self.assertTrue(allows(b"bob", "send", "orders"))
        self.assertTrue(allows(b"bob", "receive", "orders"))
        self.assertFalse(allows(b"carol", "send", "orders"))

    def test_anyUser(self) -> None:
        """
        C{*} stands for every authenticated user, and not for anonymous
        clients.
        """
        allows = self.permissions.allows
        self.assertTrue(allows(b"alice", "send", "public/x/y"))
        self.assertTrue(allows(b"carol", "send", "public/x"))
        self.assertFalse(allows(ANONYMOUS, "send", "public/x"))
        self.assertFalse(allows(None, "send", "public/x"))

    def test_anonymous(self) -> None:
        """
        C{anonymous} stands for clients that did not authenticate (avatar id
        C{ANONYMOUS}, or none), and not for a user named C{anonymous}.
        """
        allows = self.permissions.allows
        self.assertTrue(allows(ANONYMOUS, "receive", "public/x"))
        self.assertTrue(allows(None, "receive", "public/x"))
        self.assertFalse(allows(ANONYMOUS, "receive", "orders"))
        self.assertFalse(allows(b"anonymous", "receive", "public/x"))

    def test_quotedUser(self) -> None:
        """
        A quoted user name may hold blanks (a certificate subject); C{?}
        matches one character.
        """
        allows = self.permissions.allows
        self.assertTrue(allows(b"CN=client, O=Example", "receive", "devices/1"))
        self.assertFalse(allows(b"CN=client, O=Example", "receive", "devices/12"))

    def test_caseSensitive(self) -> None:
        """
        Patterns are case sensitive.
        """
        self.assertFalse(self.permissions.allows(b"alice", "send", "ORDERS"))

    def test_empty(self) -> None:
        """
        No rules allow nothing.
        """
        permissions = Permissions.parse("# nothing\n\n")
        self.assertEqual(permissions, Permissions())
        self.assertFalse(permissions.allows(b"alice", "send", "q"))

    def test_equality(self) -> None:
        """
        Permissions parsed from the same text are equal, and hashable.
        """
        self.assertEqual(Permissions.parse(RULES), self.permissions)
        self.assertEqual(hash(Permissions.parse(RULES)), hash(self.permissions))

    def assertMalformed(self, text: str, *parts: str) -> None:
        """
        Assert that parsing C{text} fails with a L{ValueError} whose message
        holds each of C{parts}.
        """
        error = self.assertRaises(ValueError, Permissions.parse, text)
        for part in parts:
            self.assertIn(part, str(error))

    def test_tooFewFields(self) -> None:
        """
        A line needs a user, a right and a pattern.
        """
        self.assertMalformed("alice send q\nalice send\n", "line 2", "USER RIGHT")

    def test_unknownRight(self) -> None:
        """
        The right is send, receive or all.
        """
        self.assertMalformed(
            "\n# c\nalice write q\n", "line 3", "send, receive or all", "'write'"
        )

    def test_unclosedQuote(self) -> None:
        """
        An unclosed quote is an error.
        """
        self.assertMalformed('alice send "q\n', "line 1", "quotation")

    def test_emptyFields(self) -> None:
        """
        An empty user or pattern is an error.
        """
        self.assertMalformed('"" send q\n', "line 1", "user")
        self.assertMalformed('alice send q ""\n', "line 1", "pattern")

    def test_fromFile(self) -> None:
        """
        L{Permissions.fromFile} reads a UTF-8 file; its errors name the
        file.
        """
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write("zoë send q\n")
        self.assertTrue(Permissions.fromFile(path).allows("zoë".encode(), "send", "q"))
        with open(path, "w", encoding="utf-8") as f:
            f.write("zoë send\n")
        error = self.assertRaises(ValueError, Permissions.fromFile, path)
        self.assertIn(f"{path}, line 1", str(error))

    def test_fromFileNotUTF8(self) -> None:
        """
        A file that is not UTF-8 is a L{ValueError}.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"\xff send q\n")
        error = self.assertRaises(ValueError, Permissions.fromFile, path)
        self.assertIn("UTF-8", str(error))

    def test_fromMissingFile(self) -> None:
        """
        A file that cannot be read is an L{OSError}.
        """
        self.assertRaises(OSError, Permissions.fromFile, self.mktemp())

    def test_unknownRightInRules(self) -> None:
        """
        Rules built directly are checked too.
        """
        self.assertRaises(
            ValueError,
            Permissions,
            (("alice", "write", ("q",)),),
        )


class EnforcementTests(BrokerMixin):
    """
    The broker refuses what the permissions do not allow.
    """

    def setUp(self) -> None:
        self.useBroker(BrokerConfig(permissions=Permissions.parse(RULES)))

    def test_sendAttach(self) -> None:
        """
        A sending link to an address the user may not send to is refused on
        the link with C{amqp:unauthorized-access}; an allowed one attaches.
        """
        alice = self.connect("alice")
        self.sender(alice, "orders")
        condition = self.refused(alice.sender("replies.1"))
        self.assertEqual(condition, "amqp:unauthorized-access")
        self.assertNotIn("replies.1", self.broker.queues)

    def test_receiveAttach(self) -> None:
        """
        A receiving link from an address the user may not receive from is
        refused on the link with C{amqp:unauthorized-access}, even when the
        address does not exist (so that it cannot be probed).
        """
        alice, bob = self.connect("alice"), self.connect("bob")
        self.send(alice, "orders", body="o")
        condition = self.refused(alice.receiver("orders"))
        self.assertEqual(condition, "amqp:unauthorized-access")
        self.assertEqual(self.get(self.receiver(bob, "orders")).body, "o")
        self.assertEqual(
            self.refused(bob.receiver("nowhere")), "amqp:unauthorized-access"
        )

    def test_relay(self) -> None:
        """
        Through the anonymous relay, a message to an address the user may
        not send to is rejected with C{amqp:unauthorized-access}; the others
        are routed.
        """
        alice = self.connect("alice")
        self.send(alice, None, address="orders", body=1)
        d = alice.send(None, Message(address="replies.1", body=2))
        self.flush()
        failure = self.failureResultOf(d, MessageRejected)
        self.assertEqual(failure.value.condition, "amqp:unauthorized-access")
        self.assertEqual(self.depth("orders"), 1)
        self.assertNotIn("replies.1", self.broker.queues)

    def test_anonymous(self) -> None:
        """
        Anonymous clients have the C{anonymous} rules, not the C{*} ones.
        """
        anonymous = self.connect()
        self.receiver(anonymous, "public/news")
        condition = self.refused(anonymous.sender("public/news"))
        self.assertEqual(condition, "amqp:unauthorized-access")
        # An authenticated user has the * rules.
        self.sender(self.connect("bob"), "public/news")

    def test_dynamicAlwaysAllowed(self) -> None:
        """
        A client may always create a temporary queue and use it, through
        its connection; other users need a rule.
        """
        anonymous = self.connect()
        receiver = self.receiver(anonymous, None, dynamic=True)  # type: ignore[arg-type]
        address = receiver.address
        assert address is not None
        self.send(anonymous, address, body="to myself")
        self.send(anonymous, None, address=address, body="relayed")
        self.assertEqual(self.get(receiver).body, "to myself")
        self.assertEqual(self.get(receiver).body, "relayed")
        bob = self.connect("bob")
        self.assertEqual(self.refused(bob.sender(address)), "amqp:unauthorized-access")
