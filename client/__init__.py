"""The client library a Tina4 app imports: ``install()`` connects the app to the sidecar.

Importing it imports neither Tina4 nor aiohttp's server parts; Tina4 is imported when
``install()`` runs.
"""

from tina4_sidecar.client.install import install

__all__ = ["install"]
