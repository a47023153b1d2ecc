"""Hosts on one machine: Linux network namespaces joined by veth pairs on a bridge, all made by the caller.

Every address lives inside namespaces this module creates (a private /24, 10.77.0.0/24 by default), and the
veth pairs are created inside them, so the machine's own interfaces and namespace are never touched. The bridge
sits in a "hub" namespace of its own; cutting a host's link takes its port on that bridge down, which is what a
pulled cable or a dead switch port looks like to both ends: packets vanish, nothing is refused.

Needs root (CAP_NET_ADMIN) and iproute2. When a namespace cannot be made, :class:`NetworkUnavailable` is raised:
the multi-host tests fail then, they never skip.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

_PREFIX = "stc"  # every namespace of ours is named stc<pid>-<host>, so a crashed run's leftovers can be found
_CLONE_NEWNET = 0x40000000


class NetworkUnavailable(RuntimeError):
    """Network namespaces, veth pairs or the bridge could not be made (not root, no iproute2...)."""


def _ip(*args: str) -> None:
    binary = shutil.which("ip")
    if binary is None:
        raise NetworkUnavailable("iproute2's `ip` is not installed (apt-get install iproute2)")
    done = subprocess.run([binary, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NetworkUnavailable(f"`ip {' '.join(args)}` failed: {done.stderr.strip() or done.returncode}")


def _namespaces() -> list[str]:
    root = Path("/run/netns")
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def remove_stale_namespaces() -> list[str]:
    """Delete namespaces left by earlier runs of ours whose process is gone (a SIGKILLed test run)."""
    removed = []
    for name in _namespaces():
        owner = name[len(_PREFIX):].split("-", 1)[0]
        if name.startswith(_PREFIX) and owner.isdigit() and not Path(f"/proc/{owner}").exists():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
            removed.append(name)
    return removed


@dataclass
class Network:
    """A bridge in a namespace of its own, and hosts attached to it, each one namespace with one address."""

    subnet: str = "10.77.0"  # the first three octets of the /24
    tag: str = field(default_factory=lambda: f"{_PREFIX}{os.getpid()}")
    hosts: dict[str, str] = field(default_factory=dict)  # host name → address
    ports: dict[str, str] = field(default_factory=dict)  # host name → its port on the bridge
    _made: list[str] = field(default_factory=list)

    @property
    def hub(self) -> str:
        return f"{self.tag}-hub"

    def namespace(self, host: str) -> str:
        return f"{self.tag}-{host}"

    def create(self) -> Network:
        remove_stale_namespaces()
        self._add_namespace(self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        return self

    def _add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self._made.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def add_host(self, host: str, last_octet: int) -> str:
        """A namespace for ``host`` with ``eth0`` at <subnet>.<last_octet>/24 on the bridge; returns the address."""
        namespace, port = self.namespace(host), f"p{len(self.ports)}"
        self._add_namespace(namespace)
        # Both ends are created inside our namespaces: the machine's own namespace never holds one.
        _ip("-n", namespace, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", self.hub)
        _ip("-n", self.hub, "link", "set", port, "master", "br0", "up")
        address = f"{self.subnet}.{last_octet}"
        _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "eth0", "up")
        self.hosts[host], self.ports[host] = address, port
        return address

    def cut(self, host: str) -> None:
        """Pull the host's cable: its bridge port goes down; both ends see silence, not refusals."""
        _ip("-n", self.hub, "link", "set", self.ports[host], "down")

    def restore(self, host: str) -> None:
        _ip("-n", self.hub, "link", "set", self.ports[host], "up")

    def command(self, host: str, argv: list[str], *, hostname: str | None = None) -> list[str]:
        """``argv`` run on ``host``: in its namespace, with its own host name (a UTS namespace) when given."""
        prefix = ["ip", "netns", "exec", self.namespace(host)]
        if hostname is None:
            return [*prefix, *argv]
        return [*prefix, "unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', hostname, *argv]

    def call(self, host: str, function: Callable[[], T]) -> T:
        """Run ``function`` in a thread that entered ``host``'s namespace (sockets it opens live there).

        A network namespace belongs to a thread, not the process, so the test process keeps its own
        everywhere else. Whatever ``function`` connects must be made inside it (no pooled clients).
        """
        outcome: dict[str, object] = {}

        def enter_and_run() -> None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(f"/run/netns/{self.namespace(host)}", os.O_RDONLY)
                try:
                    if libc.setns(fd, _CLONE_NEWNET) != 0:
                        raise NetworkUnavailable(f"setns into {host}: {os.strerror(ctypes.get_errno())}")
                finally:
                    os.close(fd)
                outcome["value"] = function()
            except BaseException as error:  # noqa: BLE001 (handed to the caller's thread, raised there)
                outcome["error"] = error

        thread = threading.Thread(target=enter_and_run, name=f"in-{host}")
        thread.start()
        thread.join()
        if "error" in outcome:
            raise outcome["error"]  # type: ignore[misc]
        return outcome["value"]  # type: ignore[return-value]

    def destroy(self) -> None:
        for name in reversed(self._made):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        self._made.clear()
        self.hosts.clear()
        self.ports.clear()
