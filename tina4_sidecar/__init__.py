"""tina4-sidecar: a caching reverse proxy for Tina4 Python apps, and the client library the app imports.

The import package. Its subpackages live at the repository's top level (``proxy/``, ``client/``,
``config/``, ``store/``) and this folder holds relative symlinks to them, so that the checkout has
the installed layout: packaging finds every subpackage by itself, and tools that read the tree in
place (mypy, ruff, the test suite) see ``tina4_sidecar.*`` as the project's own code.

Importing it loads nothing else: the client library must stay light inside the app.
"""

__version__ = "0.1.0"
