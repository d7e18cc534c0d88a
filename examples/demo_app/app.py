"""The demo app on Tina4's own server: ``python examples/demo_app/app.py`` (run it in a scratch
directory, Tina4 creates src/ data/ logs/ ... in its working directory).

Needs ``TINA4_OVERRIDE_CLIENT=true``; honours ``TINA4_HOST`` and ``TINA4_PORT`` (default 7146).
With uvicorn installed and ``TINA4_DEBUG`` off, ``run()`` serves through uvicorn in-process
unless ``TINA4_DEFAULT_WEBSERVER=true`` pins Tina4's built-in asyncio server.
"""

import demo_routes  # noqa: F401  (registers the routes and installs the sidecar client)
from tina4_python.core import run

if __name__ == "__main__":
    run()
