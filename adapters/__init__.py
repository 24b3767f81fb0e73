"""Database adapters: one sub-package per database behind the protocol in ``adapters.base``."""
