# -*- test-case-name: tests.integration.test_status_browser -*-
"""
Integration tests of the status page of C{twistd amqp-listen --web}: its
JSON and its authentication over real HTTP, and the page itself in a real
browser, headless Chromium driven by Selenium, while an amqptx client sends
and receives messages.

The browser tests need the Debian packages C{chromium} and
C{chromium-driver} (or the programs named by C{AMQPTX_CHROMIUM} and
C{AMQPTX_CHROMEDRIVER}) and the Python package C{selenium}; without them
they are skipped, unless the environment variable C{AMQPTX_REQUIRE_BROWSER}
is C{1}: then they fail.

Each browser test saves a screenshot of the page, C{TEST_NAME.png} (and
C{TEST_NAME-failed.png} with the page's HTML when it fails), in the
directory C{AMQPTX_ARTIFACTS} names, or else in C{artifacts/} under
trial's temporary directory (C{_trial_temp/artifacts/}).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from base64 import b64encode
from typing import Any

from proton import Message
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from amqptx import Outcome
from tests.integration._peers import theReactor
from tests.integration._twistd import TwistdTestCase

ADDRESS = "status-page"
"""The queue the tests send to and watch on the page."""

WAIT = 30.0
"""Seconds the browser waits for the page to show what is expected."""

_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)
"""
Chromium's flags: headless, and quiet (no network of its own: these
machines may have no Internet)."""

_DEPTH = """
const address = arguments[0];
const row = Array.from(document.querySelectorAll("#queues tbody tr"))
  .find(function (row) { return row.dataset.address === address; });
return row ? row.querySelector("td.depth").textContent : null;
"""
"""
The depth the page shows for an address, or null without a row for it."""

_CONNECTED = """
return Array.from(document.querySelectorAll("#connections .links .address"))
  .map(function (node) { return node.textContent; });
"""
"""
The addresses of the links the page shows."""


def artifacts() -> str:
    """
    @return: the directory for the tests' artifacts (created if need be):
        C{AMQPTX_ARTIFACTS}, or C{artifacts} in the working directory
        (trial's temporary directory).
    """
    path = os.path.abspath(os.environ.get("AMQPTX_ARTIFACTS") or "artifacts")
    os.makedirs(path, exist_ok=True)
    return path


def _programs() -> tuple[str, str]:
    """
    @return: the paths of Chromium and its WebDriver.
    @raise SkipTest: when they or Selenium are missing, unless
        C{AMQPTX_REQUIRE_BROWSER=1}.
    @raise RuntimeError: when they are missing and
        C{AMQPTX_REQUIRE_BROWSER=1}.
    """
    missing = []
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium is not installed (pip install selenium)")
    found = []
    for variable, names in [
        ("AMQPTX_CHROMIUM", ("chromium", "chromium-browser")),
        ("AMQPTX_CHROMEDRIVER", ("chromedriver",)),
    ]:
        path = os.environ.get(variable) or next(
            (p for p in map(shutil.which, names) if p is not None), None
        )
        if path is None or not os.access(path, os.X_OK):
            missing.append(f"{names[0]} is not installed (or set {variable})")
        else:
            found.append(path)
    if missing:
        reason = "; ".join(missing)
        if os.environ.get("AMQPTX_REQUIRE_BROWSER") == "1":
            raise RuntimeError(f"AMQPTX_REQUIRE_BROWSER=1, but {reason}")
        raise SkipTest(reason)
    chromium, chromedriver = found
    return chromium, chromedriver


class Browser:
    """
    Headless Chromium under Selenium.  Every method blocks: call them in a
    thread (L{deferToThread}), so that the reactor goes on serving.
    """

    def __init__(self, chromium: str, chromedriver: str) -> None:
        """
        Start the browser, with a new empty profile.

        @param chromium: the browser's program.
        @param chromedriver: its WebDriver's program.
        """
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self._profile = tempfile.mkdtemp(prefix="amqptx-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in (*_FLAGS, f"--user-data-dir={self._profile}"):
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(chromedriver), options=options)

    def open(self, url: str) -> None:
        """
        Load a page, and wait until its script has shown the status once.

        @param url: the page.
        @raise TimeoutError: if it has not within L{WAIT} seconds.
        """
        self.driver.get(url)
        self.waitFor(
            "return Number(document.body.dataset.updates || 0) > 0 && "
            'document.getElementById("state").textContent',
            "live",
        )

    def run(self, script: str, *arguments: Any) -> Any:
        """
        @return: what a script run in the page returns.
        """
        return self.driver.execute_script(script, *arguments)

    def waitFor(self, script: str, expected: Any, *arguments: Any) -> None:
        """
        Wait until a script run in the page returns what is expected.

        @raise TimeoutError: if it has not within L{WAIT} seconds, with
            what it returned last.
        """
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.wait import WebDriverWait

        last: list[Any] = []

        def check(driver: Any) -> bool:
            last[:] = [driver.execute_script(script, *arguments)]
            return bool(last[0] == expected)

        try:
            WebDriverWait(self.driver, WAIT, poll_frequency=0.2).until(check)
        except TimeoutException:
            raise TimeoutError(
                f"after {WAIT} s the page shows {last[0]!r}, not {expected!r}"
            ) from None

    def save(self, name: str, html: bool = False) -> str:
        """
        Save a screenshot of the page (and its HTML) as artifacts.

        @param name: the file name, without extension.
        @param html: whether to save the page's HTML too.
        @return: the screenshot's path.
        """
        path = os.path.join(artifacts(), f"{name}.png")
        self.driver.save_screenshot(path)
        if html:
            with open(os.path.join(artifacts(), f"{name}.html"), "w") as f:
                f.write(self.driver.page_source)
        return path

    def quit(self) -> None:
        """
        Stop the browser and remove its profile.
        """
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self._profile, ignore_errors=True)


async def _get(url: str, user: str | None = None) -> tuple[int, bytes]:
    """
    GET a URL.

    @param url: the URL.
    @param user: C{NAME:PASSWORD} for HTTP Basic authentication, or
        L{None}.
    @return: the response's code and body.
    """
    headers = Headers()
    if user is not None:
        headers.addRawHeader(b"authorization", b"Basic " + b64encode(user.encode()))
    response = await Agent(theReactor()).request(b"GET", url.encode(), headers)
    body = await readBody(response)
    return response.code, body


class StatusPageTests(TwistdTestCase):
    """
    C{twistd amqp-listen --web} run as a real subprocess.
    """

    async def test_json(self) -> None:
        """
        C{/api/status} shows the messages an amqptx client sent, and its
        connection with its link; the server (with a store) stops cleanly.
        """
        twistd = await self.startTwistd(
            "--web",
            "tcp:0:interface=127.0.0.1",
            "--store",
            os.path.abspath(self.mktemp()),
        )
        port = await twistd.webListening
        connection = await self.connect(twistd.url)
        sender = await connection.sender(ADDRESS)
        for n in range(3):
            self.assertIs(await sender.send(Message(body=n)), Outcome.ACCEPTED)
        code, body = await _get(f"http://127.0.0.1:{port}/api/status")
        self.assertEqual(code, 200)
        status = json.loads(body)
        [queue] = status["queues"]
        self.assertEqual((queue["address"], queue["depth"]), (ADDRESS, 3))
        [shown] = status["connections"]
        self.assertEqual(shown["containerId"], connection.connection.container)
        self.assertEqual(
            [(link["role"], link["address"]) for link in shown["links"]],
            [("sender", ADDRESS)],
        )
        await connection.close()
        await twistd.signal("TERM")
        output = twistd.output()
        self.assertIn("Server Shut Down.", output)
        self.assertNotIn("Traceback", output)

    async def test_authentication(self) -> None:
        """
        With C{--auth}, the page and its JSON need the broker's credentials,
        even with C{--allow-anonymous} (which is for AMQP clients).
        """
        twistd = await self.startTwistd(
            "--web",
            "tcp:0:interface=127.0.0.1",
            "--auth",
            "memory:alice:secret",
            "--allow-anonymous",
        )
        port = await twistd.webListening
        for path in ("/", "/api/status"):
            url = f"http://127.0.0.1:{port}{path}"
            code, _ = await _get(url)
            self.assertEqual(code, 401)
            code, _ = await _get(url, "alice:wrong")
            self.assertEqual(code, 401)
            code, _ = await _get(url, "alice:secret")
            self.assertEqual(code, 200)
        self.assertIn("passwords in clear", twistd.output())


class BrowserTests(TwistdTestCase):
    """
    The status page in headless Chromium.
    """

    def setUp(self) -> None:
        self.programs = _programs()
        super().setUp()

    async def browser(self) -> Browser:
        """
        @return: a new browser, stopped when the test ends.
        """
        browser: Browser = await deferToThread(Browser, *self.programs)
        self.addCleanup(deferToThread, browser.quit)
        return browser

    async def watch(self, browser: Browser, url: str, twistdURL: str) -> None:
        """
        Load the page, then send and receive messages, checking that the
        depth the page shows follows; save a screenshot.

        @param browser: the browser.
        @param url: the page's URL.
        @param twistdURL: the server's AMQP URL.
        """
        name = self.id().rsplit(".", 1)[-1]
        try:
            await deferToThread(browser.open, url)
            self.assertIsNone(await deferToThread(browser.run, _DEPTH, ADDRESS))
            connection = await self.connect(twistdURL)
            sender = await connection.sender(ADDRESS)
            for n in range(3):
                await sender.send(Message(body=n))
            await deferToThread(browser.waitFor, _DEPTH, "3", ADDRESS)
            for n in range(4):
                await sender.send(Message(body=n))
            await deferToThread(browser.waitFor, _DEPTH, "7", ADDRESS)
            # The receiver takes 5 at once (its credit).
            receiver = await connection.receiver(ADDRESS, credit=5)
            await deferToThread(browser.waitFor, _DEPTH, "2", ADDRESS)
            await deferToThread(browser.waitFor, _CONNECTED, [ADDRESS, ADDRESS])
            (await receiver.get()).accept()
            path = await deferToThread(browser.save, name)
            self.assertTrue(os.path.getsize(path) > 0)
        except BaseException:
            await deferToThread(browser.save, f"{name}-failed", True)
            raise

    async def test_depthChanges(self) -> None:
        """
        The page shows the depth of a queue changing as a client sends
        messages and receives some.
        """
        twistd = await self.startTwistd("--web", "tcp:0:interface=127.0.0.1")
        port = await twistd.webListening
        browser = await self.browser()
        await self.watch(browser, f"http://127.0.0.1:{port}/", twistd.url)

    async def test_authenticated(self) -> None:
        """
        Behind C{--auth}, the page works for a user who logged in (here with
        the credentials in the URL): its script's requests are
        authenticated too.
        """
        twistd = await self.startTwistd(
            "--web",
            "tcp:0:interface=127.0.0.1",
            "--auth",
            "memory:alice:secret",
            "--allow-anonymous",
        )
        port = await twistd.webListening
        browser = await self.browser()
        await self.watch(browser, f"http://alice:secret@127.0.0.1:{port}/", twistd.url)
