"""Database adapters: one sub-package per database behind the protocol in ``adapters.base``.

``connect(url)`` returns the adapter for a URL and imports only that database's driver.
"""

from adapters._connect import connect

__all__ = ["connect"]
