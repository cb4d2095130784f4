"""Cluster addresses, checked before Ray is asked: a wrong one fails in seconds with a clear message.

``ray.init`` given an address nobody listens on keeps retrying the connection for a long time; a plain TCP
connect with a timeout says the same thing in about a second. Allowed: ``auto`` (the cluster that
``ray start --head`` started on this machine), ``ray://HOST:PORT`` (Ray Client, port 10001 by default) and
``HOST:PORT`` (a head's GCS address, port 6379 by default). No Ray import here.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
from pathlib import Path

__all__ = ["ClusterUnreachable", "check_address", "host_port", "probe"]

_HOST_PORT = re.compile(r"^(?:ray://)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


class ClusterUnreachable(ConnectionError):
    """Nothing answers at the cluster address (the message says what was tried and how to start one)."""


def check_address(address: str) -> str:
    """``address`` itself when it has an allowed form; ValueError naming the allowed ones otherwise."""
    text = (address or "").strip()
    if text == "auto":
        return text
    m = _HOST_PORT.match(text)
    if not m or not 0 < int(m.group(2)) < 65536:
        raise ValueError(f"cluster address {address!r} is not allowed; allowed: auto, ray://HOST:PORT (Ray Client) "
                         "or HOST:PORT (the head's GCS address, e.g. 127.0.0.1:6379)")
    return text


def host_port(address: str) -> tuple[str, int]:
    m = _HOST_PORT.match(check_address(address))
    if not m:
        raise ValueError(f"{address!r} names no host and port")
    return m.group(1).strip("[]"), int(m.group(2))


def _auto_address() -> str:
    """The GCS address ``auto`` means: $RAY_ADDRESS, else the file ``ray start --head`` wrote on this machine."""
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if env and env != "auto":
        return env
    current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    text = current.read_text().strip() if current.is_file() else ""
    if not text:
        raise ClusterUnreachable("cluster address 'auto': no Ray cluster was started on this machine (no "
                                 f"{current}); start one with ray start --head, or give HOST:PORT")
    return text


def probe(address: str, timeout_s: float = 3.0) -> str:
    """Raise :class:`ClusterUnreachable` unless something accepts a TCP connection at ``address`` within
    ``timeout_s``; return the address to hand to ``ray.init``."""
    address = check_address(address)
    target = _auto_address() if address == "auto" else address
    host, port = host_port(target)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ClusterUnreachable(
            f"no Ray cluster answers at {target} ({type(exc).__name__}: {exc or 'timed out'} after {timeout_s:g} s); "
            "is the head started (ray start --head) and the port open? Nothing was queued or run."
        ) from None
    return address
