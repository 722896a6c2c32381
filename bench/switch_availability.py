"""How many requests fail while an app is switched between upstreams through real Caddy.

Loopback only, bounded: CLIENTS concurrent clients for SECONDS, a switch every INTERVAL.
`--mode files` switches as the router does (rewrite the upstream files Caddy reads per request,
no reload); `--mode load` reloads the whole config through POST /load at every switch.
Run: .venv/bin/python bench/switch_availability.py [--mode files|load] [--seconds 10]
     [--clients 32] [--interval 0.25] [--no-keepalive] [--retry]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import httpx

from dockyard.bus.embedded import free_port
from dockyard.router import upstream_files
from dockyard.router.caddy import admin_listen, start_caddy
from dockyard.router.config import build_config
from dockyard.router.routes import AppRoute


def upstream(name: str) -> tuple[ThreadingHTTPServer, str]:
    """A tiny HTTP server answering its name."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    Thread(target=server.serve_forever, daemon=True).start()
    return server, f"127.0.0.1:{server.server_address[1]}"


async def main(seconds: float, clients: int, interval: float, retry: bool,
               keepalive: bool = True, mode: str = "files") -> None:
    a, addr_a = upstream("a")
    b, addr_b = upstream("b")
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="bench-caddy-"))
    caddy = await start_caddy(work)
    listen = f"127.0.0.1:{port}"
    routes_dir = work / "routes" if mode == "files" else None

    def config(addr: str) -> dict:  # type: ignore[type-arg]
        return build_config({"app": AppRoute(app="app", upstreams=(addr,))}, domain="localhost",
                            listen=listen, admin_listen=admin_listen(caddy.admin_url),
                            routes_dir=str(routes_dir) if routes_dir else None)

    async def switch_to(addr: str) -> None:
        if routes_dir is not None:
            upstream_files.switch(routes_dir, "app", [addr])
        else:
            await caddy.admin.load(config(addr))

    if routes_dir is not None:
        upstream_files.switch(routes_dir, "app", [addr_a])
    await caddy.admin.load(config(addr_a))
    results: Counter[str] = Counter()
    retries = 0
    stop = time.monotonic() + seconds

    async def client() -> None:
        nonlocal retries
        limits = httpx.Limits(max_keepalive_connections=None if keepalive else 0)
        async with httpx.AsyncClient(timeout=5, limits=limits) as http:
            while time.monotonic() < stop:
                for attempt in range(2 if retry else 1):
                    try:
                        r = await http.get(f"http://{listen}/", headers={"Host": "app.localhost"})
                        results[f"{r.status_code} {r.text}"] += 1
                        break
                    except httpx.TransportError as exc:
                        if attempt == 0 and retry:
                            retries += 1
                            continue
                        results[type(exc).__name__] += 1

    async def switcher() -> int:
        n = 0
        while time.monotonic() + interval < stop:
            await asyncio.sleep(interval)
            await switch_to(addr_b if n % 2 == 0 else addr_a)
            n += 1
        await asyncio.sleep(max(0.0, stop - time.monotonic()))
        return n

    try:
        switches, *_ = await asyncio.gather(switcher(), *(client() for _ in range(clients)))
    finally:
        await caddy.stop()
        a.shutdown()
        b.shutdown()
    total = sum(results.values())
    errors = total - results["200 a"] - results["200 b"]
    print(f"mode {mode}: {switches} switches, {total} requests, {errors} errors "
          f"({100 * errors / max(total, 1):.3f}%), retries {retries}, by outcome {dict(results)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--interval", type=float, default=0.25)
    parser.add_argument("--retry", action="store_true", help="retry once on a dropped connection")
    parser.add_argument("--no-keepalive", action="store_true", help="a new connection per request")
    parser.add_argument("--mode", choices=("files", "load"), default="files")
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.clients, args.interval, args.retry, not args.no_keepalive,
                     args.mode))
