"""The demo app as an ASGI application for uvicorn, through Tina4's ``asgi()`` bootstrap::

    uvicorn asgi:app --app-dir examples/demo_app --port 7146 --workers 2

Each worker imports this module, so each one registers the routes and installs the client.
"""

import demo_routes  # noqa: F401  (registers the routes and installs the sidecar client)
from tina4_python.core.server import asgi

app = asgi()
