# mypy: allow-untyped-calls
"""
Tests for L{amqptx._url}.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import string
from urllib.parse import quote

from hypothesis import assume, given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from amqptx._url import AMQPURL, DEFAULT_PORTS, parseURL

# Strategies -----------------------------------------------------------------

_labels = st.from_regex(
    r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,8}[A-Za-z0-9_])?", fullmatch=True
)

hostNames = (
    st.lists(_labels, min_size=1, max_size=4)
    .filter(lambda labels: not labels[-1].isdigit())
    .map(".".join)
)
ipv4Addresses = st.ip_addresses(v=4).map(str)
ipv6Addresses = st.ip_addresses(v=6).flatmap(
    lambda address: st.sampled_from([address.compressed, address.exploded])
)
hosts = st.one_of(hostNames, ipv4Addresses, ipv6Addresses)
ports = st.integers(min_value=1, max_value=65535)

# Text that is likely to need percent-encoding; no NUL (SASL PLAIN cannot
# carry it in credentials) and, by default, no surrogates.
_tricky = st.one_of(
    st.sampled_from("@:/%?#[] \t\n*"),
    st.characters(codec="utf-8", exclude_characters="\x00"),
)
credentials = st.text(_tricky, min_size=1, max_size=12)
paths = st.text(
    st.one_of(st.sampled_from("@:/%?#[] *"), st.characters(codec="utf-8")), max_size=20
)


@st.composite
def amqpURLs(draw: st.DrawFn) -> AMQPURL:
    """
    Generate arbitrary valid L{AMQPURL}s.

    @param draw: Hypothesis's draw function.
    @return: A URL.
    """
    user = draw(st.none() | credentials)
    password = None if user is None else draw(st.none() | st.text(_tricky))
    return AMQPURL(
        scheme=draw(st.sampled_from(["amqp", "amqps"])),
        host=draw(hosts),
        port=draw(ports),
        user=user,
        password=password,
        path=draw(paths),
    )


@st.composite
def urlTexts(draw: st.DrawFn) -> tuple[str, AMQPURL]:
    """
    Generate valid AMQP URL texts, in various non-canonical spellings, with
    the URL each should parse to.

    @param draw: Hypothesis's draw function.
    @return: The text and the expected result of parsing it.
    """
    scheme = draw(st.sampled_from(["amqp", "amqps"]))
    schemeText = "".join(c.upper() if draw(st.booleans()) else c for c in scheme)
    kind = draw(st.sampled_from(["name", "ipv4", "ipv6"]))
    if kind == "name":
        host = draw(hostNames)
        hostText = host
    elif kind == "ipv4":
        host = hostText = draw(ipv4Addresses)
    else:
        host = draw(ipv6Addresses)
        hostText = f"[{host}]"
    port = draw(st.none() | ports)
    if port is None:
        portText = ""
    else:
        portText = ":" + "0" * draw(st.integers(0, 2)) + str(port)
    safeInUserInfo = draw(st.sampled_from(["", "!$&'()*+,;=", "@"]))
    user = draw(st.none() | credentials)
    password = None if user is None else draw(st.none() | st.text(_tricky))
    userInfo = ""
    if user is not None:
        userInfo = quote(user, safe=safeInUserInfo)
        if password is not None:
            userInfo += ":" + quote(password, safe=safeInUserInfo + ":")
        userInfo += "@"
    path = draw(st.none() | paths)
    pathText = ""
    if path is not None:
        pathText = "/" + quote(path, safe=draw(st.sampled_from(["", "/", "/:@;="])))
    text = f"{schemeText}://{userInfo}{hostText}{portText}{pathText}"
    expected = AMQPURL(
        scheme,
        host,
        DEFAULT_PORTS[scheme] if port is None else port,
        user,
        password,
        path or "",
    )
    return text, expected


# Tests ----------------------------------------------------------------------


class ParseAcceptedTests(SynchronousTestCase):
    """
    L{parseURL} accepts every valid form of AMQP URL.
    """

    def test_amqpDefaultPort(self) -> None:
        """
        An C{amqp} URL without a port gets port 5672, and does not use TLS.
        """
        url = parseURL("amqp://localhost")
        self.assertEqual(url, AMQPURL("amqp", "localhost", 5672))
        self.assertIsNone(url.user)
        self.assertIsNone(url.password)
        self.assertEqual(url.path, "")
        self.assertFalse(url.tls)

    def test_amqpsDefaultPort(self) -> None:
        """
        An C{amqps} URL without a port gets port 5671, and uses TLS.
        """
        url = parseURL("amqps://broker.example.com")
        self.assertEqual(url, AMQPURL("amqps", "broker.example.com", 5671))
        self.assertTrue(url.tls)

    def test_defaultPorts(self) -> None:
        """
        L{DEFAULT_PORTS} maps each supported scheme to its IANA port.
        """
        self.assertEqual(dict(DEFAULT_PORTS), {"amqp": 5672, "amqps": 5671})

    def test_explicitPort(self) -> None:
        """
        An explicit port is used, for either scheme.
        """
        self.assertEqual(parseURL("amqp://h:1234").port, 1234)
        self.assertEqual(parseURL("amqps://h:5672").port, 5672)
        self.assertEqual(parseURL("amqp://h:1").port, 1)
        self.assertEqual(parseURL("amqp://h:65535").port, 65535)

    def test_portLeadingZeros(self) -> None:
        """
        Leading zeros in the port are allowed and dropped.
        """
        url = parseURL("amqp://h:0005672")
        self.assertEqual(url.port, 5672)
        self.assertEqual(url.toText(), "amqp://h:5672")

    def test_caseNormalised(self) -> None:
        """
        The scheme and host name are case-insensitive and normalised to lower
        case.
        """
        self.assertEqual(
            parseURL("AMQPS://Broker.Example.COM:99"),
            AMQPURL("amqps", "broker.example.com", 99),
        )

    def test_hostNames(self) -> None:
        """
        Host names may contain letters, digits, hyphens and underscores, in
        labels of up to 63 characters.
        """
        for name in [
            "h",
            "my-broker",
            "my_broker.internal",
            "a1.b2.c3",
            "1host.example",
            "x" * 63 + ".example",
            ".".join(["a" * 63] * 3 + ["b" * 61]),
        ]:
            self.assertEqual(parseURL(f"amqp://{name}").host, name)

    def test_ipv4(self) -> None:
        """
        An IPv4 address is accepted as the host, with or without a port.
        """
        self.assertEqual(
            parseURL("amqp://127.0.0.1"), AMQPURL("amqp", "127.0.0.1", 5672)
        )
        self.assertEqual(
            parseURL("amqps://10.1.2.3:99"), AMQPURL("amqps", "10.1.2.3", 99)
        )

    def test_ipv6(self) -> None:
        """
        An IPv6 address in brackets is accepted as the host, with or without a
        port, and is stored without brackets.
        """
        self.assertEqual(parseURL("amqp://[::1]"), AMQPURL("amqp", "::1", 5672))
        self.assertEqual(parseURL("amqp://[::1]:2000"), AMQPURL("amqp", "::1", 2000))
        self.assertEqual(parseURL("amqps://[2001:db8::42]:5000").host, "2001:db8::42")

    def test_ipv6Normalised(self) -> None:
        """
        IPv6 addresses are normalised to their compressed, lower case form.
        """
        self.assertEqual(parseURL("amqp://[::0]").host, "::")
        self.assertEqual(
            parseURL("amqp://[2001:0DB8:0000:0000:0000:0000:0000:0001]").host,
            "2001:db8::1",
        )
        self.assertEqual(parseURL("amqp://[::ffff:192.0.2.1]").host, "::ffff:c000:201")

    def test_userOnly(self) -> None:
        """
        A user name without a password is accepted.
        """
        url = parseURL("amqp://guest@h")
        self.assertEqual(url.user, "guest")
        self.assertIsNone(url.password)

    def test_userAndPassword(self) -> None:
        """
        A user name and password are accepted.
        """
        url = parseURL("amqp://guest:secret@h:1")
        self.assertEqual(url, AMQPURL("amqp", "h", 1, "guest", "secret"))

    def test_emptyPassword(self) -> None:
        """
        An empty password is distinct from no password.
        """
        url = parseURL("amqp://guest:@h")
        self.assertEqual(url.password, "")
        self.assertEqual(url.toText(revealPassword=True), "amqp://guest:@h:5672")

    def test_credentialsPercentDecoded(self) -> None:
        """
        The user name and password are percent-decoded.
        """
        url = parseURL("amqp://us%40er:p%3Ass@h")
        self.assertEqual(url.user, "us@er")
        self.assertEqual(url.password, "p:ss")
        url = parseURL("amqp://%C3%A9mile:%2F%3F%23%25%20@h")
        self.assertEqual(url.user, "\N{LATIN SMALL LETTER E WITH ACUTE}mile")
        self.assertEqual(url.password, "/?#% ")

    def test_lastAtSignEndsUserInfo(self) -> None:
        """
        The last C{"@"} before the host ends the user information, so an
        unencoded C{"@"} in the password (or user name) is part of it.
        """
        url = parseURL("amqp://u:p@ss@h")
        self.assertEqual((url.user, url.password, url.host), ("u", "p@ss", "h"))
        url = parseURL("amqp://a@b:c@h")
        self.assertEqual((url.user, url.password, url.host), ("a@b", "c", "h"))

    def test_firstColonEndsUser(self) -> None:
        """
        The first C{":"} in the user information ends the user name, so an
        unencoded C{":"} in the password is part of it.
        """
        url = parseURL("amqp://u:a:b@h")
        self.assertEqual((url.user, url.password), ("u", "a:b"))

    def test_path(self) -> None:
        """
        The path is what follows the first C{"/"} after the host and port.
        """
        self.assertEqual(parseURL("amqp://h/queue").path, "queue")
        self.assertEqual(parseURL("amqp://h:1/a/b").path, "a/b")
        self.assertEqual(parseURL("amqp://[::1]/q").path, "q")
        self.assertEqual(parseURL("amqp://u:p@h/q").path, "q")

    def test_rabbitMQPath(self) -> None:
        """
        A RabbitMQ-style address starting with C{"/"} keeps that C{"/"}.
        """
        url = parseURL("amqp://h//queue/x")
        self.assertEqual(url.path, "/queue/x")
        self.assertEqual(url.toText(), "amqp://h:5672//queue/x")

    def test_emptyPath(self) -> None:
        """
        A trailing C{"/"} gives an empty path.
        """
        self.assertEqual(parseURL("amqp://h/"), AMQPURL("amqp", "h", 5672))

    def test_pathPercentDecoded(self) -> None:
        """
        The path is percent-decoded.
        """
        self.assertEqual(parseURL("amqp://h/a%20b%3Fc%23d%2F").path, "a b?c#d/")

    def test_atSignInPath(self) -> None:
        """
        An C{"@"} in the path does not make the host part of a user name.
        """
        self.assertEqual(
            parseURL("amqp://h/q@x"), AMQPURL("amqp", "h", 5672, path="q@x")
        )
        self.assertEqual(
            parseURL("amqp://h:99/q@x"), AMQPURL("amqp", "h", 99, path="q@x")
        )
        self.assertEqual(
            parseURL("amqp://u:p@h/q@x"),
            AMQPURL("amqp", "h", 5672, "u", "p", "q@x"),
        )


class ParseRememberedTests(SynchronousTestCase):
    """
    L{parseURL} remembers recent URLs: the same text gives the same
    (immutable) L{AMQPURL}.
    """

    def test_sameText(self) -> None:
        """
        Parsing the same text twice gives the same object, equal to a fresh
        parse of another spelling of the same URL.
        """
        first = parseURL("amqp://guest:pw@Cache.Example:5000")
        self.assertIs(parseURL("amqp://guest:pw@Cache.Example:5000"), first)
        self.assertEqual(parseURL("AMQP://guest:pw@cache.example:5000"), first)


class ParseRejectedTests(SynchronousTestCase):
    """
    L{parseURL} rejects invalid URLs with errors that name the problem.
    """

    def assertRejected(self, text: str, *fragments: str) -> ValueError:
        """
        Assert that parsing C{text} raises L{ValueError} whose message
        contains each of C{fragments}.

        @param text: The URL text.
        @param fragments: Text the message must contain.
        @return: The exception.
        """
        error: ValueError = self.assertRaises(ValueError, parseURL, text)
        message = str(error)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return error

    def test_rejectedEveryTime(self) -> None:
        """
        A URL rejected once is rejected again (parses are remembered, errors
        are not).
        """
        for _ in range(2):
            self.assertRejected("amqp://h:0", "port")

    def test_notString(self) -> None:
        """
        A non-L{str} argument raises L{TypeError}.
        """
        for value in [b"amqp://h", 5672, None]:
            self.assertRaises(TypeError, parseURL, value)

    def test_unknownScheme(self) -> None:
        """
        Schemes other than C{amqp} and C{amqps} are rejected.
        """
        self.assertRejected("http://x", "'http'", "'http://x'")
        self.assertRejected("amqpx://x", "'amqpx'")
        self.assertRejected("://x", "invalid scheme", "'://x'")
        self.assertRejected("am qp://x", "invalid character ' '")
        self.assertRejected("1amqp://x", "invalid scheme", "'1amqp://x'")

    def test_missingSeparator(self) -> None:
        """
        A URL without C{"://"} is rejected.
        """
        self.assertRejected("localhost:5672", "'://'", "'localhost:5672'")
        self.assertRejected("amqp:/h", "'://'")
        self.assertRejected("", "'://'")

    def test_missingHost(self) -> None:
        """
        A URL without a host is rejected.
        """
        for text in [
            "amqp://",
            "amqp://:5672",
            "amqp://user@",
            "amqp://user:pw@:1",
            "amqp:///path",
        ]:
            self.assertRejected(text, "missing host")

    def test_portOutOfRange(self) -> None:
        """
        Ports outside 1-65535 are rejected.
        """
        self.assertRejected(
            "amqp://host:99999",
            "invalid port '99999' in AMQP URL 'amqp://host:99999': must be 1-65535",
        )
        self.assertRejected("amqp://host:0", "'0'", "1-65535")
        self.assertRejected("amqp://host:65536", "'65536'")
        self.assertRejected("amqp://host:" + "9" * 5000, "1-65535")

    def test_portNotNumber(self) -> None:
        """
        Ports other than ASCII decimal numbers are rejected.
        """
        for port in ["abc", "-1", "+1", "1e3", "0x10", "\N{ARABIC-INDIC DIGIT ONE}"]:
            self.assertRejected(f"amqp://host:{port}", f"invalid port {port!r}")
        self.assertRejected("amqp://[::1]:x", "invalid port 'x'")

    def test_emptyPort(self) -> None:
        """
        A C{":"} with no port after it is rejected.
        """
        self.assertRejected("amqp://host:", "missing port", "'amqp://host:'")
        self.assertRejected("amqp://[::1]:", "missing port")

    def test_unterminatedBracket(self) -> None:
        """
        An IPv6 address without its closing bracket is rejected.
        """
        self.assertRejected("amqp://[::1", "unterminated '['", "'[::1'")
        self.assertRejected("amqp://[::1/path", "'[::1'")

    def test_garbageAfterBracket(self) -> None:
        """
        Anything but a C{":"} after the closing bracket is rejected.
        """
        self.assertRejected("amqp://[::1]x", "'x'", "'[::1]'")
        self.assertRejected("amqp://[::1]]:5", "']:5'")

    def test_badIPv6(self) -> None:
        """
        Invalid IPv6 addresses in brackets are rejected.
        """
        for address in ["::g", "", "1:2:3", "1.2.3.4", "::1::2", "v1.fe"]:
            self.assertRejected(
                f"amqp://[{address}]", f"invalid IPv6 address {address!r}"
            )

    def test_ipv6ZoneIdentifier(self) -> None:
        """
        IPv6 zone identifiers are not supported.
        """
        self.assertRejected("amqp://[fe80::1%25eth0]", "zone", "'fe80::1%25eth0'")

    def test_unbracketedIPv6(self) -> None:
        """
        An IPv6 address without brackets is rejected, with a hint.
        """
        self.assertRejected("amqp://::1", "'::1'", "brackets")
        self.assertRejected("amqp://fe80::1:5672", "'fe80::1:5672'", "brackets")

    def test_badHostNames(self) -> None:
        """
        Host names with invalid characters or labels are rejected.
        """
        for name in [
            "-h",
            "h-",
            "a.-b",
            "a..b",
            ".a",
            "h.",
            "ex$ample",
            "ex%41mple",
            "h]",
            "\N{LATIN SMALL LETTER A WITH DIAERESIS}.example",
            "x" * 64,
            ".".join(["a" * 63] * 4),
        ]:
            self.assertRejected(f"amqp://{name}", f"invalid host name {name!r}")

    def test_badIPv4(self) -> None:
        """
        A host whose last label is numeric must be a valid IPv4 address.
        """
        for address in ["1.2.3.999", "01.2.3.4", "1234", "1.2.3", "a.1"]:
            self.assertRejected(
                f"amqp://{address}", f"invalid IPv4 address {address!r}"
            )

    def test_queryOrFragment(self) -> None:
        """
        AMQP URLs have no query or fragment.
        """
        self.assertRejected("amqp://h?x=1", "'?x=1'")
        self.assertRejected("amqp://h#frag", "'#frag'")
        self.assertRejected("amqp://h:1/q?x#y", "'?x#y'")
        self.assertRejected("amqp://h/q#", "'#'")

    def test_whitespaceAndControlCharacters(self) -> None:
        """
        Unencoded whitespace, control and format characters are rejected.
        """
        for text, bad in [
            ("amqp://h ost", "' '"),
            (" amqp://h", "' '"),
            ("amqp://h\n", "'\\n'"),
            ("amqp://h/q\t", "'\\t'"),
            ("amqp://h\x00", "'\\x00'"),
            ("amqp://h/\x7f", "'\\x7f'"),
            ("amqp://h/\N{ZERO WIDTH SPACE}", "'\\u200b'"),
            ("amqp://h/\N{NO-BREAK SPACE}", "'\\xa0'"),
            ("amqp://us er@h", "' '"),
        ]:
            self.assertRejected(text, f"invalid character {bad}")

    def test_emptyUser(self) -> None:
        """
        An empty user name is rejected, with or without a password.
        """
        self.assertRejected("amqp://:pw@h", "empty user name")
        self.assertRejected("amqp://@h", "empty user name")

    def test_badPercentEncoding(self) -> None:
        """
        A C{"%"} not followed by two hex digits is rejected, naming the part.
        """
        self.assertRejected("amqp://u%zz:p@h", "user name 'u%zz'")
        self.assertRejected("amqp://h/%4", "path '%4'")
        self.assertRejected("amqp://h/a%", "path 'a%'")
        self.assertRejected("amqp://u:%zz@h", "password")

    def test_notUTF8(self) -> None:
        """
        Percent-encoded bytes that are not UTF-8 are rejected.
        """
        self.assertRejected("amqp://h/%FF", "path '%FF'", "UTF-8")
        self.assertRejected("amqp://%C3@h", "user name '%C3'", "UTF-8")
        self.assertRejected("amqp://u:%FF@h", "password", "UTF-8")

    def test_nulInCredentials(self) -> None:
        """
        NUL characters, which SASL PLAIN cannot carry, are rejected in the
        user name and password.
        """
        self.assertRejected("amqp://a%00b@h", "user name 'a\\x00b'", "NUL")
        self.assertRejected("amqp://u:a%00b@h", "password", "NUL")

    def test_nulInPath(self) -> None:
        """
        An encoded NUL is allowed in the path.
        """
        self.assertEqual(parseURL("amqp://h/a%00").path, "a\x00")


class PasswordMaskingTests(SynchronousTestCase):
    """
    The password never appears in C{str}, C{repr} or error messages.
    """

    def test_str(self) -> None:
        """
        C{str} of a URL masks the password.
        """
        url = parseURL("amqp://guest:s3cret@localhost")
        self.assertEqual(str(url), "amqp://guest:***@localhost:5672")

    def test_repr(self) -> None:
        """
        C{repr} of a URL masks the password.
        """
        url = parseURL("amqp://guest:s3cret@localhost")
        self.assertEqual(repr(url), "AMQPURL('amqp://guest:***@localhost:5672')")
        self.assertNotIn("s3cret", repr([url]))

    def test_emptyPasswordMasked(self) -> None:
        """
        An empty password is masked too, so its emptiness is not revealed.
        """
        self.assertEqual(str(parseURL("amqp://u:@h")), "amqp://u:***@h:5672")

    def test_noPassword(self) -> None:
        """
        Without a password there is nothing to mask.
        """
        self.assertEqual(str(parseURL("amqp://guest@h")), "amqp://guest@h:5672")
        self.assertEqual(repr(parseURL("amqp://h")), "AMQPURL('amqp://h:5672')")

    def test_revealPassword(self) -> None:
        """
        C{toText(revealPassword=True)} includes the password, encoded.
        """
        url = AMQPURL("amqps", "h", 5671, "us@er", "p@ss:/w?#%")
        self.assertEqual(url.toText(), "amqps://us%40er:***@h:5671")
        self.assertEqual(
            url.toText(revealPassword=True),
            "amqps://us%40er:p%40ss%3A%2Fw%3F%23%25@h:5671",
        )

    def test_errorMessages(self) -> None:
        """
        Errors quote the URL with its password masked.
        """
        for text, fragment in [
            ("amqp://guest:s3cret@host:99999", "'99999'"),
            ("amqp://guest:s3cret@host:abc", "'abc'"),
            ("amqp://guest:s3cret@ho$t", "'ho$t'"),
            ("amqp://guest:s3cret@host?x", "'?x'"),
            ("http://guest:s3cret@host", "'http'"),
            ("amqp://:s3cret@host", "empty user name"),
            ("amqp://guest:s3cret@host/%zz", "'%zz'"),
            ("amqp://guest:s3cret@[::1", "'[::1'"),
            ("guest:s3cret@host", "'://'"),
            ("guest:s3cret@host://", "invalid scheme"),
            ("guest:s3://cret@host", "invalid scheme"),
        ]:
            message = str(self.assertRaises(ValueError, parseURL, text))
            self.assertIn(fragment, message)
            self.assertIn(":***@", message)
            self.assertNotIn("s3cret", message)

    def test_controlCharacterInPassword(self) -> None:
        """
        A control character in the password is reported without naming it.
        """
        message = str(self.assertRaises(ValueError, parseURL, "amqp://u:a b@h"))
        self.assertEqual(
            message,
            "invalid character in the password in AMQP URL 'amqp://u:***@h':"
            " whitespace and control characters must be percent-encoded",
        )

    def test_unencodedSlashInPassword(self) -> None:
        """
        A password containing an unencoded C{"/"}, C{"?"} or C{"#"} ends the
        authority early; the error does not quote any of it as a bad port.
        """
        for text in ["amqp://u:s3/cret@h", "amqp://u:s3?cret@h", "amqp://u:s3#cret@h"]:
            message = str(self.assertRaises(ValueError, parseURL, text))
            self.assertIn("percent-encode", message)
            self.assertIn("'amqp://u:***@h'", message)
            self.assertNotIn("s3", message)

    @given(
        password=st.text(
            string.ascii_letters + string.digits + "/?#:@%!$&'()*+,;=[]-._~ ",
            max_size=12,
        ).map(lambda text: "ZQ" + text),
        template=st.sampled_from(
            [
                "amqp://user:{}@host:99999",
                "amqp://user:{}@host:abc",
                "amqp://user:{}@ho$t",
                "amqp://user:{}@host/q?x=1",
                "http://user:{}@host",
                "amqp://user:{}@host:5672/q\n",
                "amqp://user:{}@[::1",
                "amqp://user:{}@::1",
                "amqp://:{}@host",
                "amqp://user:{}@host/%zz",
                "amqp://user:{}@",
                "user:{}@host",
                "user:{}://@host",
                "amqp://user:{}://@host:99999",
            ]
        ),
    )
    def test_passwordNeverInErrors(self, password: str, template: str) -> None:
        """
        Whatever the password, and however the URL is broken, the error
        message includes no part of the password.
        """
        text = template.format(password)
        try:
            parseURL(text)
        except ValueError as e:
            self.assertNotIn("ZQ", str(e))
        else:
            # The password's own "@" and "/" made another, valid URL of it
            # (amqp://user:ZQ@a:5672/%40@host:99999 has the path "@@host...").
            assume(False)


class AMQPURLTests(SynchronousTestCase):
    """
    Tests for constructing L{AMQPURL} directly.
    """

    def test_fields(self) -> None:
        """
        The fields are available as attributes.
        """
        url = AMQPURL("amqps", "h", 1, "u", "p", "q")
        self.assertEqual(
            (url.scheme, url.host, url.port, url.user, url.password, url.path),
            ("amqps", "h", 1, "u", "p", "q"),
        )

    def test_normalised(self) -> None:
        """
        The scheme and host are normalised as by L{parseURL}.
        """
        url = AMQPURL("AMQP", "LocalHost", 5672)
        self.assertEqual(url, parseURL("amqp://localhost"))
        self.assertEqual(AMQPURL("amqp", "0:0::1", 1).host, "::1")

    def test_badScheme(self) -> None:
        """
        Unsupported schemes are rejected.
        """
        error = self.assertRaises(ValueError, AMQPURL, "http", "h", 80)
        self.assertIn("'http'", str(error))
        self.assertRaises(TypeError, AMQPURL, b"amqp", "h", 1)

    def test_badPort(self) -> None:
        """
        The port must be an L{int} (not a L{bool}) from 1 to 65535.
        """
        self.assertRaises(TypeError, AMQPURL, "amqp", "h", True)
        self.assertRaises(TypeError, AMQPURL, "amqp", "h", "5672")
        self.assertRaises(TypeError, AMQPURL, "amqp", "h", 5672.0)
        for port in [0, -1, 65536]:
            error = self.assertRaises(ValueError, AMQPURL, "amqp", "h", port)
            self.assertIn(str(port), str(error))

    def test_badHost(self) -> None:
        """
        The host must be a non-empty valid name or address; IPv6 addresses
        are given without brackets.
        """
        for host in ["", "a..b", "1.2.3.999", "::g", "h:1"]:
            self.assertRaises(ValueError, AMQPURL, "amqp", host, 1)
        error = self.assertRaises(ValueError, AMQPURL, "amqp", "[::1]", 1)
        self.assertIn("without brackets", str(error))
        self.assertRaises(TypeError, AMQPURL, "amqp", None, 1)

    def test_passwordWithoutUser(self) -> None:
        """
        A password without a user name is rejected, without quoting it.
        """
        error = self.assertRaises(ValueError, AMQPURL, "amqp", "h", 1, None, "s3cret")
        self.assertNotIn("s3cret", str(error))

    def test_badCredentials(self) -> None:
        """
        Empty user names, NUL characters and unpaired surrogates are
        rejected; the password is never quoted.
        """
        self.assertRaises(ValueError, AMQPURL, "amqp", "h", 1, "")
        self.assertRaises(ValueError, AMQPURL, "amqp", "h", 1, "a\x00")
        self.assertRaises(ValueError, AMQPURL, "amqp", "h", 1, "\udc00")
        self.assertRaises(TypeError, AMQPURL, "amqp", "h", 1, b"u")
        for password in ["s3cret\x00", "s3cret\udc00"]:
            error = self.assertRaises(
                ValueError, AMQPURL, "amqp", "h", 1, "u", password
            )
            self.assertNotIn("s3cret", str(error))
        self.assertRaises(TypeError, AMQPURL, "amqp", "h", 1, "u", 1)

    def test_badPath(self) -> None:
        """
        The path must be a L{str} encodable as UTF-8.
        """
        self.assertRaises(ValueError, AMQPURL, "amqp", "h", 1, path="\ud800")
        self.assertRaises(TypeError, AMQPURL, "amqp", "h", 1, path=None)

    def test_replaceValidates(self) -> None:
        """
        L{dataclasses.replace} validates the changed URL.
        """
        url = AMQPURL("amqp", "h", 1)
        self.assertEqual(dataclasses.replace(url, port=2).port, 2)
        self.assertRaises(ValueError, dataclasses.replace, url, port=0)
        self.assertRaises(ValueError, dataclasses.replace, url, password="p")

    def test_frozen(self) -> None:
        """
        URLs are immutable and hashable, and equal when their fields are.
        """
        url = AMQPURL("amqp", "h", 1, "u", "p")
        self.assertRaises(dataclasses.FrozenInstanceError, setattr, url, "port", 2)
        self.assertEqual(url, AMQPURL("amqp", "H", 1, "u", "p"))
        self.assertEqual(hash(url), hash(AMQPURL("amqp", "H", 1, "u", "p")))
        self.assertNotEqual(url, AMQPURL("amqp", "h", 1, "u", "q"))

    def test_toTextCanonical(self) -> None:
        """
        C{toText} always includes the port, brackets IPv6 addresses, and
        percent-encodes the user name, password and path where needed.
        """
        url = AMQPURL("amqp", "::1", 5672, "a:b", "c d", "/q@x y:z")
        self.assertEqual(
            url.toText(revealPassword=True),
            "amqp://a%3Ab:c%20d@[::1]:5672//q%40x%20y:z",
        )
        self.assertEqual(AMQPURL("amqps", "h", 5671).toText(), "amqps://h:5671")


class RoundTripTests(SynchronousTestCase):
    """
    Property tests: formatting and parsing are inverses.
    """

    @given(amqpURLs())
    def test_toTextParses(self, url: AMQPURL) -> None:
        """
        Parsing the full text of any URL gives back an equal URL.
        """
        self.assertEqual(parseURL(url.toText(revealPassword=True)), url)

    @given(amqpURLs())
    def test_maskedTextParses(self, url: AMQPURL) -> None:
        """
        The masked text is also a valid URL, equal to the original but for a
        password of C{***}.
        """
        expected = url
        if url.password is not None:
            expected = dataclasses.replace(url, password="***")
        self.assertEqual(parseURL(str(url)), expected)
        self.assertEqual(repr(url), f"AMQPURL({str(url)!r})")

    @given(urlTexts())
    def test_parseValidText(self, example: tuple[str, AMQPURL]) -> None:
        """
        Valid URL texts, spelled in various ways, parse to the expected URL,
        and parse-format-parse is stable.
        """
        text, expected = example
        url = parseURL(text)
        self.assertEqual(url, expected)
        canonical = url.toText(revealPassword=True)
        self.assertEqual(parseURL(canonical), url)
        self.assertEqual(parseURL(canonical).toText(revealPassword=True), canonical)

    @given(hosts)
    def test_hostAcceptedByIPAddress(self, host: str) -> None:
        """
        Generated IP address hosts are normalised as L{ipaddress} does.
        """
        url = AMQPURL("amqp", host, 1)
        if ":" in host:
            self.assertEqual(url.host, ipaddress.IPv6Address(host).compressed)
        else:
            self.assertEqual(url.host, host.lower())
