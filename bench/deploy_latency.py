"""Wall time of a whole deploy (request → deploy.succeeded) on the embedded stack, and its memory.

Run: .venv/bin/python bench/deploy_latency.py [--runtime process|docker] [--deploys 5]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from dockyard.bus.embedded import free_port
from dockyard.client import DockyardClient, Followers
from dockyard.runtime.select import Runtimes
from dockyard.settings import Settings
from dockyard.stack import start_stack


def app(root: Path, version: int, runtime: str) -> Path:
    """A trivial web app with one release and one postdeploy command."""
    root.mkdir(parents=True)
    (root / "www").mkdir()
    (root / "www" / "index.html").write_text(f"v{version}\n")
    if runtime == "docker":
        (root / "Dockerfile").write_text(
            "FROM dockyard-test/busybox:latest\nCOPY . /app\nWORKDIR /app\n")
        web = "exec busybox httpd -f -p $PORT -h www"
    else:
        web = "exec python3 -m http.server $PORT --bind 127.0.0.1 --directory www"
    (root / "Procfile").write_text(f"web: {web}\nrelease: echo migrate\npostdeploy: echo warm\n")
    return root


async def main(runtime: str, deploys: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    settings = Settings.from_env(env={}, data_dir=work / "data", http_port=free_port(),
                                 runtime=runtime, drain=0.0, kill_grace=2.0)
    stack = await start_stack(settings)
    client = await DockyardClient.connect(stack.settings)
    times = []
    try:
        for n in range(1, deploys + 1):
            started = time.monotonic()
            end = await client.deploy("bench", app(work / f"v{n}", n, runtime), Followers(),
                                      wait=300)
            times.append(time.monotonic() - started)
            assert end.type == "dockyard.deploy.succeeded", end
    finally:
        await client.close()
        runtimes = Runtimes(stack.settings)
        rt = await runtimes.get(runtime)
        for ref in await rt.list_instances("bench"):
            await rt.stop_instance(ref, 2.0)
        await runtimes.close()
        await stack.stop()
        shutil.rmtree(work, ignore_errors=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{runtime}: {deploys} deploys, median {statistics.median(times):.2f}s, "
          f"max {max(times):.2f}s; peak RSS of the stack's Python process {rss:.0f} MiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runtime", default="process")
    parser.add_argument("--deploys", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.runtime, args.deploys))
