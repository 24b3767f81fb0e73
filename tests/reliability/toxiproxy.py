"""A small client for Toxiproxy's HTTP API (v2.5), standard library only.

Toxiproxy is a TCP proxy whose connections can be given "toxics" while they run: latency, a
black hole (``timeout``), a reset (``reset_peer``), a cut after N bytes (``limit_data``), a
trickle (``slicer``). The reliability tests put one proxy in front of each port the SDK talks to
and point the SDK at the proxy. ``scripts/engines.sh start toxiproxy`` runs the server and prints
``SDK_TEST_TOXIPROXY_URL``. API reference: https://github.com/Shopify/toxiproxy#http-api
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Proxy", "Toxiproxy", "ToxiproxyError", "free_port"]


class ToxiproxyError(RuntimeError):
    """The API refused a request (its status and body are in the message)."""


def free_port() -> int:
    """A TCP port nobody listens on right now (the proxy binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Toxiproxy:
    """The server at ``url`` (``http://127.0.0.1:8474``)."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise ToxiproxyError(f"{method} {path} -> {exc.code}: {exc.read().decode(errors='replace')}") from exc
        return json.loads(raw) if raw.strip() else None

    def version(self) -> str:
        """The server's version; raises ``OSError`` / ``URLError`` when nothing answers."""
        with urllib.request.urlopen(self.url + "/version", timeout=self.timeout_s) as resp:
            return resp.read().decode().strip()

    def create(self, upstream: str, *, name: str | None = None, listen_port: int | None = None) -> Proxy:
        """A new enabled proxy ``127.0.0.1:listen_port -> upstream`` (``HOST:PORT``); a free port by default."""
        name = name or f"sdk-{uuid.uuid4().hex[:10]}"
        last: Exception | None = None
        for _ in range(5):  # a free port can be taken between free_port() and the bind: try another
            port = listen_port or free_port()
            try:
                self.request("POST", "/proxies", {"name": name, "listen": f"127.0.0.1:{port}",
                                                  "upstream": upstream, "enabled": True})
                return Proxy(self, name, port, upstream)
            except ToxiproxyError as exc:
                last = exc
                if listen_port is not None or "address already in use" not in str(exc):
                    raise
        raise ToxiproxyError(f"no free port for a proxy to {upstream}: {last}")

    def proxies(self) -> dict[str, Any]:
        return self.request("GET", "/proxies")


@dataclass
class Proxy:
    """One proxy; toxics added here apply to its open connections at once and to new ones."""

    server: Toxiproxy
    name: str
    port: int
    upstream: str
    toxics: list[str] = field(default_factory=list)

    @property
    def listen(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add(self, kind: str, *, stream: str = "downstream", toxicity: float = 1.0, name: str | None = None,
            **attributes: Any) -> str:
        """Add a toxic (``latency``: latency, jitter ms; ``timeout``: timeout ms, 0 = hold forever;
        ``reset_peer``: timeout ms; ``limit_data``: bytes; ``slicer``: average_size, size_variation,
        delay us). ``stream`` is ``downstream`` (server -> client) or ``upstream``. Returns its name."""
        name = name or f"{kind}_{stream}_{len(self.toxics)}"
        self.server.request("POST", f"/proxies/{self.name}/toxics", {
            "name": name, "type": kind, "stream": stream, "toxicity": toxicity, "attributes": attributes})
        self.toxics.append(name)
        return name

    def remove(self, name: str) -> None:
        self.server.request("DELETE", f"/proxies/{self.name}/toxics/{name}")
        self.toxics.remove(name)

    def clear(self) -> None:
        """Remove every toxic this object added (the proxy stays)."""
        for name in list(self.toxics):
            self.remove(name)

    def enable(self, enabled: bool = True) -> None:
        """Disabling closes every open connection and refuses new ones, like a server that went away."""
        self.server.request("POST", f"/proxies/{self.name}", {"enabled": enabled})

    def disable(self) -> None:
        self.enable(False)

    def delete(self) -> None:
        try:
            self.server.request("DELETE", f"/proxies/{self.name}")
        except ToxiproxyError:
            pass

    @contextmanager
    def toxic(self, kind: str, **kwargs: Any) -> Iterator[str]:
        """``with proxy.toxic("latency", latency=200): ...``: the toxic lives for the block."""
        name = self.add(kind, **kwargs)
        try:
            yield name
        finally:
            if name in self.toxics:
                self.remove(name)
