"""Database adapters: one sub-package per database, built from the public adapter kit.

The kit: ``adapters.base`` (the ``Adapter`` template and everything it speaks in),
``adapters.validate``, ``adapters.filters``, ``adapters.retry``, ``adapters.ids``,
``adapters.guard``, ``adapters.drivers``; the conformance suite is ``adapters.testing``.
Adapters are found by URL scheme through ``sdk.core.registry`` (entry points in the group
``retrieval_forge.adapters``); ``connect(url)`` here is the same function.
"""

from sdk.core.registry import connect, register_adapter

__all__ = ["connect", "register_adapter"]
