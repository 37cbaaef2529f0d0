"""
Sphinx configuration of the amqptx documentation.

The documentation builds without importing amqptx (the docs environment does
not install it): the version is read from the package's source, and the API
reference (``docs/_apidocs.py``) is made by pydoctor, which reads the
sources.  Nothing is fetched from the network: there is no intersphinx
inventory but the API reference's own.
"""

import pathlib
import re
import sys

_DOCS = pathlib.Path(__file__).parent
_INIT = _DOCS.parent / "amqptx" / "__init__.py"
sys.path.insert(0, str(_DOCS))

project = "amqptx"
author = "the amqptx developers"
copyright = "the amqptx developers"
release = re.search(r'__version__ = "([^"]+)"', _INIT.read_text()).group(1)
version = release

extensions = ["_apidocs"]

# No remote inventories: _apidocs adds the API reference's, a local file.
intersphinx_mapping = {}

root_doc = "index"
exclude_patterns = ["_build", "examples"]
highlight_language = "python3"
pygments_style = "sphinx"
nitpicky = True

html_theme = "alabaster"
html_title = f"amqptx {release}"
