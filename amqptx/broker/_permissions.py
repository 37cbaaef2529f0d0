# -*- test-case-name: tests.test_broker_permissions -*-
"""
Who may send to and receive from which addresses of C{twistd amqp-listen}.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from dataclasses import dataclass, field
from typing import Literal

from .._sasl import AvatarId

__all__ = ["Permissions", "Right"]

Right = Literal["send", "receive"]
"""
What a client does with an address: C{"send"} to it or C{"receive"} from
it."""

_RIGHTS: dict[str, tuple[Right, ...]] = {
    "send": ("send",),
    "receive": ("receive",),
    "all": ("send", "receive"),
}

_ANY = "*"
_ANONYMOUS = "anonymous"


def _userKey(avatarId: AvatarId | None) -> str | None:
    """
    @return: the user name an avatar id stands for, or L{None} for an
        anonymous client (no avatar id, or C{twisted.cred}'s C{ANONYMOUS}).
    """
    if isinstance(avatarId, bytes):
        return avatarId.decode("utf-8", "replace")
    if isinstance(avatarId, str):
        # Some checkers (--auth unix) give text avatar ids.
        return avatarId
    return None


@dataclass(frozen=True)
class Permissions:
    """
    Rules that allow users to send to and receive from addresses; anything no
    rule allows is refused.

    The text form (L{Permissions.parse}, L{Permissions.fromFile}) has one rule
    a line::

        # USER      RIGHT    PATTERN [PATTERN ...]
        alice       send     orders orders.*
        alice       receive  replies/alice/*
        *           receive  topic/news/*
        anonymous   all      public/*
        "CN=client,O=Example Corp"  all  devices/*

    Fields are separated by blanks and may be quoted, shell style (a user
    name with a blank, from a certificate, needs quotes); C{#} starts a
    comment; blank lines are ignored.

      - C{USER} is the authenticated user's avatar id as C{twisted.cred} gave
        it (the PLAIN user name, the EXTERNAL certificate subject...), or
        C{*} for every authenticated user, or C{anonymous} for clients that
        did not authenticate (SASL ANONYMOUS, or no amqptx SASL at all).
        C{*} does not include anonymous clients.  A user whose name is
        literally C{anonymous} gets only the C{*} rules.
      - C{RIGHT} is C{send}, C{receive} or C{all} (both).
      - each C{PATTERN} is a shell-style pattern (C{fnmatch}, case
        sensitive): C{*} matches any run of characters, C{/} and C{.}
        included; C{?} one character; C{[seq]} one of a set.

    A user may do what any of the rules naming them, or C{*} for an
    authenticated user, allows.

    @ivar rules: the rules, as (user, right, patterns) with C{user} L{None}
        for anonymous clients and C{right} C{"send"} or C{"receive"}.
    """

    rules: tuple[tuple[str | None, Right, tuple[str, ...]], ...] = ()
    _index: dict[tuple[str | None, Right], re.Pattern[str]] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        grouped: dict[tuple[str | None, Right], list[str]] = {}
        for user, right, patterns in self.rules:
            if right not in ("send", "receive"):
                raise ValueError(f"unknown right {right!r}")
            grouped.setdefault((user, right), []).extend(patterns)
        index = {
            key: re.compile("|".join(fnmatch.translate(p) for p in patterns))
            for key, patterns in grouped.items()
        }
        object.__setattr__(self, "_index", index)

    @classmethod
    def parse(cls, text: str, source: str = "") -> Permissions:
        """
        Read rules from their text form (see L{Permissions}).

        @param text: the rules.
        @param source: where the text comes from (a file name), to begin
            error messages with.
        @return: the permissions.
        @raise ValueError: for a malformed line, naming its number and the
            problem.
        """
        prefix = f"{source}, " if source else ""
        rules: list[tuple[str | None, Right, tuple[str, ...]]] = []
        for number, line in enumerate(text.splitlines(), 1):
            try:
                fields = shlex.split(line, comments=True)
            except ValueError as e:
                raise ValueError(f"{prefix}line {number}: {e}") from None
            if not fields:
                continue
            if len(fields) < 3:
                raise ValueError(
                    f"{prefix}line {number}: expected USER RIGHT PATTERN "
                    f"[PATTERN ...], got {line.strip()!r}"
                )
            user, right, *patterns = fields
            if not user:
                raise ValueError(f"{prefix}line {number}: the user is empty")
            rights = _RIGHTS.get(right)
            if rights is None:
                raise ValueError(
                    f"{prefix}line {number}: the right must be send, receive or "
                    f"all, not {right!r}"
                )
            if not all(patterns):
                raise ValueError(f"{prefix}line {number}: an empty pattern")
            key = None if user == _ANONYMOUS else user
            for each in rights:
                rules.append((key, each, tuple(patterns)))
        return cls(tuple(rules))

    @classmethod
    def fromFile(cls, path: str) -> Permissions:
        """
        Read rules from a file (UTF-8, in the text form of L{Permissions}).

        @param path: the file's path.
        @return: the permissions.
        @raise ValueError: for a malformed line (the message names the file
            and the line) or a file that is not UTF-8.
        @raise OSError: when the file cannot be read.
        """
        with open(path, "rb") as f:
            raw = f.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not UTF-8 ({e})") from None
        return cls.parse(text, path)

    def allows(self, avatarId: AvatarId | None, right: Right, address: str) -> bool:
        """
        @param avatarId: the client's avatar id (bytes for an authenticated
            user, C{twisted.cred}'s C{ANONYMOUS} or L{None} for an anonymous
            client).
        @param right: C{"send"} or C{"receive"}.
        @param address: the address.
        @return: whether a rule allows the client to do that.
        """
        index = self._index
        user = _userKey(avatarId)
        pattern = index.get((user, right))
        if pattern is not None and pattern.match(address):
            return True
        if user is None:
            return False
        pattern = index.get((_ANY, right))
        return pattern is not None and pattern.match(address) is not None
