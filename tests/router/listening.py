"""Which TCP ports listen on this machine and which a process holds, read from /proc; and
whether a port answers as Caddy's admin API."""

from __future__ import annotations

import asyncio
import ipaddress
import os
from pathlib import Path
from typing import Any

import httpx

LISTEN = "0A"  # the TCP state of a listening socket in /proc/net/tcp


def _address(hex_address: str) -> str:
    """The IP address of /proc/net/tcp{,6}'s hex form (32-bit words in host byte order)."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def listening_sockets() -> dict[int, tuple[str, int]]:
    """Every listening TCP socket of this network namespace: inode -> (address, port)."""
    found: dict[int, tuple[str, int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != LISTEN:
                continue
            host, port = fields[1].split(":")
            found[int(fields[9])] = (_address(host), int(port, 16))
    return found


def listening_of(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket process pid listens on."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:["):-1]))
    return {where for inode, where in listening_sockets().items() if inode in inodes}


def loopback_ports() -> set[int]:
    """Every TCP port something listens on at a loopback (or any) address."""
    return {port for address, port in listening_sockets().values()
            if ipaddress.ip_address(address).is_loopback
            or ipaddress.ip_address(address).is_unspecified}


async def admin_config_at(port: int, wait: float = 2.0) -> Any:
    """What GET /config/ on 127.0.0.1:port answers as JSON, as Caddy's admin API would
    (None when it answers otherwise, or not at all)."""
    try:
        async with httpx.AsyncClient(timeout=wait) as client:
            response = await client.get(f"http://127.0.0.1:{port}/config/")
        return response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


async def admin_configs_on_loopback() -> dict[int, Any]:
    """port -> config, for every loopback port that answers GET /config/ with JSON."""
    ports = sorted(loopback_ports())
    answers = await asyncio.gather(*(admin_config_at(p) for p in ports))
    return {port: answer for port, answer in zip(ports, answers, strict=True)
            if answer is not None}


def processes_of(program: str, data_dir: Path) -> list[int]:
    """Pids of live `program` processes (by executable name) whose arguments name data_dir."""
    root = str(data_dir.absolute()) + os.sep
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = [os.fsdecode(a) for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone meanwhile
            continue
        if (argv and state != "Z" and Path(argv[0]).name == program
                and any(arg.startswith(root) for arg in argv[1:])):
            found.append(int(entry.name))
    return sorted(found)
