"""
Sphinx configuration of the amqptx documentation.

The documentation builds without importing amqptx (the docs environment does
not install it): the version is read from the package's source.
"""

import pathlib
import re

_INIT = pathlib.Path(__file__).parent.parent / "amqptx" / "__init__.py"

project = "amqptx"
author = "the amqptx developers"
copyright = "the amqptx developers"
release = re.search(r'__version__ = "([^"]+)"', _INIT.read_text()).group(1)
version = release

extensions = []

root_doc = "index"
exclude_patterns = ["_build", "examples"]
highlight_language = "python3"
pygments_style = "sphinx"
nitpicky = True

html_theme = "alabaster"
html_title = f"amqptx {release}"
