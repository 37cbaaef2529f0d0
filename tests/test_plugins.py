# -*- test-case-name: tests.test_plugins -*-
# mypy: allow-untyped-calls
"""
Tests for amqptx's Twisted plugins (C{twisted/plugins/amqptx_plugins.py}) and
for the lazy public namespace of L{amqptx}.
"""

from __future__ import annotations

import configparser
import subprocess
import sys
from importlib import import_module

from twisted.application.service import IServiceMaker, ServiceMaker
from twisted.internet.interfaces import (
    IStreamClientEndpointStringParserWithReactor,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import getPlugins
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

import amqptx
from amqptx._parsers import AMQPClientParser, AMQPServerParser

_ROOT = FilePath(__file__).parent().parent()


def _runPython(code: str) -> str:
    """
    Run Python code in a new interpreter, from the repository's root.

    @param code: the code.
    @return: what it printed, stripped.
    """
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=_ROOT.path,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.strip()


class PluginDiscoveryTests(SynchronousTestCase):
    """
    Twisted's plugin system finds amqptx's parsers and service maker.
    """

    def test_clientParsers(self) -> None:
        """
        The client parsers for C{amqp} and C{amqps} are plugins for
        L{IStreamClientEndpointStringParserWithReactor}.
        """
        prefixes = {
            parser.prefix
            for parser in getPlugins(IStreamClientEndpointStringParserWithReactor)
            if isinstance(parser, AMQPClientParser)
        }
        self.assertEqual(prefixes, {"amqp", "amqps"})

    def test_serverParsers(self) -> None:
        """
        The server parsers for C{amqp} and C{amqps} are plugins for
        L{IStreamServerEndpointStringParser}.
        """
        prefixes = {
            parser.prefix
            for parser in getPlugins(IStreamServerEndpointStringParser)
            if isinstance(parser, AMQPServerParser)
        }
        self.assertEqual(prefixes, {"amqp", "amqps"})

    def test_serviceMaker(self) -> None:
        """
        A service maker with the tap name C{amqp-listen} is a plugin for
        L{IServiceMaker}, and it names the module that makes the service.
        """
        makers = [
            maker
            for maker in getPlugins(IServiceMaker)
            if maker.tapname == "amqp-listen"
        ]
        self.assertEqual(len(makers), 1)
        maker = makers[0]
        assert isinstance(maker, ServiceMaker)
        self.assertEqual(maker.module, "amqptx._tap")


class LightImportTests(SynchronousTestCase):
    """
    Importing the plugin module or L{amqptx} does not load proton, since
    Twisted imports the plugin module whenever any program looks for plugins.
    """

    def test_pluginModule(self) -> None:
        """
        Importing the plugin module does not import proton.
        """
        self.assertEqual(
            _runPython(
                "import twisted.plugins.amqptx_plugins, sys; "
                "print('proton' in sys.modules)"
            ),
            "False",
        )

    def test_pluginModuleNoReactor(self) -> None:
        """
        Importing the plugin module does not install a reactor either.
        """
        self.assertEqual(
            _runPython(
                "import twisted.plugins.amqptx_plugins, sys; "
                "print('twisted.internet.reactor' in sys.modules)"
            ),
            "False",
        )

    def test_amqptx(self) -> None:
        """
        Importing L{amqptx} alone does not import proton.
        """
        self.assertEqual(
            _runPython("import amqptx, sys; print('proton' in sys.modules)"),
            "False",
        )

    def test_parsingLoadsEndpoints(self) -> None:
        """
        The endpoints module (and proton with it) is loaded once a string is
        parsed, and the result is an amqptx endpoint.
        """
        self.assertEqual(
            _runPython(
                "from twisted.internet.testing import MemoryReactorClock; "
                "from twisted.internet.endpoints import clientFromString; "
                "import sys; "
                "e = clientFromString(MemoryReactorClock(), 'amqp:h'); "
                "print(type(e).__name__, 'proton' in sys.modules)"
            ),
            "AMQPClientEndpoint True",
        )


class PublicNamesTests(SynchronousTestCase):
    """
    L{amqptx.__all__} lists names that all resolve to the objects of the
    private modules that define them.
    """

    def test_allResolve(self) -> None:
        """
        Every name in C{__all__} is an attribute of L{amqptx}, and is the very
        object its private module defines.
        """
        self.assertEqual(sorted(amqptx.__all__), sorted(amqptx._WHERE))
        for name, module in amqptx._WHERE.items():
            value = getattr(amqptx, name)
            self.assertIs(value, getattr(import_module(f"amqptx.{module}"), name), name)

    def test_examples(self) -> None:
        """
        A few names, spelled out.
        """
        from amqptx import _client, _connect, _endpoints, _errors, _url

        self.assertIs(amqptx.AMQPConnection, _client.AMQPConnection)
        self.assertIs(amqptx.AMQPClientEndpoint, _endpoints.AMQPClientEndpoint)
        self.assertIs(amqptx.TLSError, _errors.TLSError)
        self.assertIs(amqptx.connect, _connect.connect)
        self.assertIs(amqptx.parseURL, _url.parseURL)

    def test_unknownName(self) -> None:
        """
        A name amqptx does not have raises L{AttributeError}.
        """
        self.assertRaises(AttributeError, getattr, amqptx, "NoSuchName")
        self.assertFalse(hasattr(amqptx, "Engine"))

    def test_dir(self) -> None:
        """
        C{dir(amqptx)} lists every public name.
        """
        self.assertTrue(set(amqptx.__all__) <= set(dir(amqptx)))


class PackagingTests(SynchronousTestCase):
    """
    What C{pip install .} installs.
    """

    def test_everyPackageListed(self) -> None:
        """
        Every package of the source tree is listed in C{setup.cfg}, so that
        an installed amqptx has all its parts.
        """
        root = FilePath(__file__).parent().parent()
        config = configparser.ConfigParser()
        config.read(root.child("setup.cfg").path)
        listed = set(config["options"]["packages"].split())
        found = {
            ".".join(path.parent().segmentsFrom(root))
            for path in root.child("amqptx").walk()
            if path.basename() == "__init__.py"
        }
        self.assertEqual(found - listed, set())
        self.assertIn("twisted.plugins", listed)


class FailoverPluginTests(SynchronousTestCase):
    """
    The C{amqp-failover:} parser is a plugin too.
    """

    def test_found(self) -> None:
        """
        C{getPlugins} finds a client parser with the prefix
        C{amqp-failover}.
        """
        prefixes = {
            parser.prefix
            for parser in getPlugins(IStreamClientEndpointStringParserWithReactor)
        }
        self.assertIn("amqp-failover", prefixes)
