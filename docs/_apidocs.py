"""
The API reference: pydoctor pages of amqptx's public names, built into the
HTML output's C{api/} directory whenever Sphinx builds HTML.

pydoctor reads the sources (it imports nothing of amqptx, proton or
Twisted) and understands the docstrings' epytext.  L{APISystem} adapts it to
amqptx:

 - The public names of C{amqptx}, C{amqptx.testing} and C{amqptx.broker}
   are defined in private modules and imported by the public ones (by
   C{amqptx} only for type checkers, as it loads them lazily): they are
   moved into the public modules, where users import them from, and the
   private modules are hidden.
 - Links to names outside amqptx (Twisted's, proton's, Python's) have no
   target without intersphinx inventories, which would be fetched from the
   network: they are left as plain text, without a warning.  Every other
   pydoctor warning (a link to an amqptx name that does not exist, an
   ambiguous link, bad epytext...) is a Sphinx warning, so C{sphinx-build
   -W} fails on it.
 - In a class's docstrings, and its methods', a bare name is also looked
   for among the members the class inherits (C{L{whenClosed}} in a method
   of L{amqptx.AMQPConnection} is C{AMQPProtocol.whenClosed}), as it is
   among the class's own members.

The Sphinx pages link to the API pages through pydoctor's C{objects.inv},
read from the output directory (intersphinx, offline):
C{:py:class:`amqptx.AMQPConnection`}.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import pathlib
import re
from typing import Any, cast

from pydoctor import extensions, model
from pydoctor.driver import main as pydoctor
from sphinx.application import Sphinx
from sphinx.util import logging

_log = logging.getLogger(__name__)

ROOT = pathlib.Path(__file__).parent.parent
PACKAGE = "amqptx"
PUBLIC_MODULES = ("amqptx", "amqptx.testing", "amqptx.broker")
API_DIRECTORY = "api"

_UNRESOLVED = re.compile(r'Cannot find link target for "([^"]+)"')
_EXTERNAL_INTERFACE = re.compile(r"^(twisted|zope)\..*\.I[A-Z]\w*$")


class _InheritedNames(extensions.ClassMixin):
    """
    Names in a class's docstrings also find the members it inherits from
    the classes pydoctor knows, once their method resolution order is known.
    """

    def _localNameToFullName(self, name: str) -> str:
        cls = cast(model.Class, self)
        if (
            cls._mro is not None
            and name not in cls.contents
            and name not in cls._localNameToFullName_map
        ):
            for base in cls.mro(include_self=False):
                if name in base.contents:
                    return base.contents[name].fullName()
        found: str = super()._localNameToFullName(name)
        return found


def setup_pydoctor_extension(registrar: extensions.ExtRegistrar) -> None:
    """
    Make this module a pydoctor extension too.

    @param registrar: pydoctor's.
    """
    registrar.register_mixin(_InheritedNames)


class APISystem(model.System):
    """
    pydoctor's system, documenting amqptx's public names where users import
    them from, quiet about links to names outside amqptx.
    """

    custom_extensions = [__name__]

    def postProcess(self) -> None:
        """
        Move the public names into their public modules, mark the interfaces
        that extend Twisted's as interfaces, then post-process as usual.
        """
        for name in PUBLIC_MODULES:
            module = self.allobjects[name]
            assert isinstance(module, model.Module)
            for exported in module.all or ():
                self._moveInto(module, exported)
        for cls in self.objectsOfType(model.Class):
            self._markInterface(cls)
        super().postProcess()

    def _moveInto(self, module: model.Module, exported: str) -> None:
        """
        Move a name a public module imports (and lists in its C{__all__})
        from the private module that defines it.

        So that the names in the moved object's docstrings still resolve,
        the imports of the module that defined it are added to the public
        module's (where it has none of the same name).
        """
        if exported in module.contents:
            return
        target = module._localNameToFullName_map.get(exported)
        moved = None if target is None else self.objForFullName(target)
        if moved is None:
            # Another project's name (testing.IOPump is Twisted's).
            return
        origin = moved.parent
        moved.reparent(module, exported)
        if isinstance(origin, model.Module):
            for local, full in origin._localNameToFullName_map.items():
                module._localNameToFullName_map.setdefault(local, full)

    def _markInterface(self, cls: model.Class) -> None:
        """
        An amqptx class that extends one of Twisted's interfaces (such as
        C{IProtocol}) is an interface too, which pydoctor cannot tell
        without Twisted's sources.
        """
        if getattr(cls, "isinterface", True):
            return
        for base in cls.bases:
            if _EXTERNAL_INTERFACE.match(base):
                cls.isinterface = True
                cls.kind = model.DocumentableKind.INTERFACE
                cls.implementedby_directly = []
                return

    def msg(self, section: str, msg: str, thresh: int = 0, *a: Any, **k: Any) -> None:
        """
        Drop the warnings about links to names outside amqptx.
        """
        if thresh < 0:
            unresolved = _UNRESOLVED.search(msg)
            if unresolved is not None and _external(unresolved.group(1)):
                return
        super().msg(section, msg, thresh, *a, **k)


def _external(name: str) -> bool:
    """
    @param name: a name a link could not be resolved to.
    @return: whether it names something outside amqptx: a builtin, or a
        dotted name in another package.
    """
    if "." not in name:
        return hasattr(builtins, name)
    return name.split(".")[0] != PACKAGE


def arguments(output: pathlib.Path) -> list[str]:
    """
    @param output: the directory to write the API pages to.
    @return: pydoctor's command line.
    """
    return [
        "--make-html",
        "--quiet",
        f"--html-output={output}",
        f"--project-name={PACKAGE}",
        "--project-url=../index.html",
        f"--project-base-dir={ROOT}",
        "--docformat=epytext",
        f"--system-class={__name__}.APISystem",
        "--privacy=PRIVATE:amqptx._*",
        "--privacy=HIDDEN:amqptx.__*__",
        "--privacy=PRIVATE:amqptx.broker._*",
        "--privacy=HIDDEN:amqptx.broker.__*__",
        str(ROOT / PACKAGE),
    ]


def build(app: Sphinx) -> None:
    """
    Write the API pages into the HTML output, before the Sphinx pages are
    read (and intersphinx loads their inventory).

    @param app: Sphinx.
    """
    if app.builder.format != "html":
        return
    output = pathlib.Path(app.outdir) / API_DIRECTORY
    _log.info("building the API reference with pydoctor into %s", output)
    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        code = pydoctor(arguments(output))
    for line in report.getvalue().splitlines():
        if line.strip():
            _log.warning("pydoctor: %s", line)
    if code:
        _log.warning("pydoctor: exited with status %d", code)


def _link(app: Sphinx, config: Any) -> None:
    """
    Make the API pages' inventory, in the output directory, an intersphinx
    inventory: C{:py:class:} and the other roles link to the API pages.

    @param app: Sphinx.
    @param config: its configuration.
    """
    mapping = dict(config.intersphinx_mapping)
    mapping[PACKAGE] = (
        f"{API_DIRECTORY}/",
        str(pathlib.Path(app.outdir) / API_DIRECTORY / "objects.inv"),
    )
    config.intersphinx_mapping = mapping


def setup(app: Sphinx) -> dict[str, Any]:
    """
    Build the API pages along with the HTML pages, and let the Sphinx pages
    link to them.

    @param app: Sphinx.
    @return: the extension's metadata.
    """
    app.setup_extension("sphinx.ext.intersphinx")
    # Before intersphinx checks its configuration (priority 800).
    app.connect("config-inited", _link, priority=700)
    # Before intersphinx reads the inventory (at the default priority, 500).
    app.connect("builder-inited", build, priority=490)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
