"""The Swarm runtime: the docker runtime's images, with instances and one-offs run as Swarm
services placed by Swarm (through the Engine API, aiodocker), for apps that outgrow one host.

Builds happen on the engine the service talks to (a manager); on more than one node the image
must reach the others through a registry (`docker push`), which this runtime does not do: a
single-node swarm, or nodes that share an image store, need none. A predeploy whose file changes
are committed into the release's image runs as a plain container on that engine (Swarm has no
commit); every other one-off is a job of one task.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any, cast

import structlog
from aiodocker.exceptions import DockerError

from dockyard.contract.events import InstanceRef
from dockyard.runtime import docker_config as dc
from dockyard.runtime import output
from dockyard.runtime import swarm_config as sc
from dockyard.runtime.base import (
    TIMEOUT_EXIT_CODE,
    InstanceSpec,
    LogSink,
    OneOffResult,
    OneOffSpec,
    OutputLine,
    StartError,
)
from dockyard.runtime.docker import START_ERROR_TAIL, DockerRuntime

logger = structlog.get_logger(__name__)

POLL = 0.1  # how often a task's state is read while waiting on it
START_WAIT = 120.0  # a task placed on a node that must first load the image may take a while
SWARM_SERVICE = "com.docker.swarm.service.id"  # the engine's label on a task's container


class SwarmRuntime(DockerRuntime):
    """Runs instances and one-offs as Swarm services of the engine's swarm."""

    name = "swarm"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._nodes: dict[str, str] = {}  # node id -> its address

    # ------------------------------------------------------------ the app's network

    def _network_config(self, app: str) -> dict[str, Any]:
        """The app's own overlay network (attachable: a committed predeploy joins it too)."""
        return sc.network_config(app)

    async def _release_network(self, app: str) -> None:
        """The app's overlay network stays until the app is removed: Swarm tears an overlay
        down asynchronously, and a service created meanwhile finds it gone."""

    # ------------------------------------------------------------ services and tasks

    async def _services(self, labels: Mapping[str, str]) -> list[Mapping[str, Any]]:
        return await self.docker.services.list(filters=dc.label_filters(labels))

    async def _task(self, service_id: str) -> Mapping[str, Any] | None:
        tasks = await self.docker.tasks.list(filters={"service": [service_id]})
        return sc.latest_task(tasks)

    async def _create_service(self, app: str, args: dict[str, Any]) -> str:
        """Create a service on the app's network; one of that name already there is taken."""
        await self._ensure_network(app)
        try:
            created = await self.docker.services.create(**args)
        except DockerError as exc:
            if exc.status != 409:
                raise
            created = await self.docker.services.inspect(args["name"])
        return str(created["ID"])

    async def _delete(self, service_id: str, grace: float | None = None) -> None:
        """Stop a service's task (SIGTERM, grace, SIGKILL) and remove the service; one already
        gone is fine. The task's container is stopped first where this engine runs it, so the
        grace asked for holds; elsewhere Swarm applies the grace the service was made with.
        Where this engine ran the task, its container is removed too (Swarm would, later)."""
        local = await self.docker.containers.list(
            all=True, filters=dc.label_filters({SWARM_SERVICE: service_id}))
        if grace is not None:
            for container in local:
                await self._stop(container, grace)
        try:
            await self.docker.services.delete(service_id)
        except DockerError as exc:
            if exc.status != 404:
                raise
        for container in local:
            await self._remove(container)

    async def _node_address(self, node_id: str) -> str:
        if node_id not in self._nodes:
            node = await self.docker.nodes.inspect(node_id=node_id)
            self._nodes[node_id] = sc.node_address(node, self.host_ip)
        return self._nodes[node_id]

    async def _tail(self, service_id: str) -> str:
        with contextlib.suppress(DockerError):
            lines = await self._logs(service_id, stdout=True, stderr=True,
                                     tail=str(START_ERROR_TAIL))
            return "".join(lines).strip()
        return ""

    # ------------------------------------------------------------ instances

    async def start_instance(self, spec: InstanceSpec) -> InstanceRef:
        """Start one instance as a service of one task (or return the running one a previous
        scheduler started); returns once its task ran `start_settle` seconds."""
        for existing in await self._services(dc.instance_identity(spec)):
            task = await self._task(str(existing["ID"]))
            if task is not None and sc.task_state(task) == sc.RUNNING:
                logger.info("re-attaching", app=spec.app, deployment_id=spec.deployment_id,
                            process=spec.process, index=spec.index)
                return await self._task_ref(existing, task)
            await self._delete(str(existing["ID"]))  # a dead leftover holds the name
        args = sc.instance_service(spec, self.confinement)
        service_id = await self._create_service(spec.app, args)
        try:
            task = await self._until_running(service_id, spec.process, spec.index)
            settled = time.monotonic() + self.start_settle
            while time.monotonic() < settled and sc.task_state(task) == sc.RUNNING:
                await asyncio.sleep(POLL)
                task = await self._task(service_id) or task
            if sc.task_state(task) != sc.RUNNING:
                raise await self._start_error(service_id, spec.process, spec.index, task)
            if spec.process == dc.WEB and sc.published_port(task) is None:
                raise StartError(f"{spec.process}.{spec.index}: Swarm published no port")
        except BaseException:
            await self._delete(service_id, 0.0)
            raise
        ref = await self._task_ref({"ID": service_id, "Spec": {"Labels": args["labels"]}}, task)
        logger.info("started", app=spec.app, deployment_id=spec.deployment_id,
                    release=spec.release, process=spec.process, index=spec.index,
                    host=ref.host, port=ref.port)
        return ref

    async def _until_running(self, service_id: str, process: str,
                             index: int) -> Mapping[str, Any]:
        deadline = time.monotonic() + START_WAIT
        while True:
            task = await self._task(service_id)
            state = sc.task_state(task) if task is not None else "new"
            if task is not None and state == sc.RUNNING:
                return task
            if task is not None and state in sc.ENDED:
                raise await self._start_error(service_id, process, index, task)
            if time.monotonic() > deadline:
                raise StartError(f"{process}.{index}: its Swarm task did not start within "
                                 f"{START_WAIT:g}s (last state: {state})")
            await asyncio.sleep(POLL)

    async def _start_error(self, service_id: str, process: str, index: int,
                           task: Mapping[str, Any]) -> StartError:
        code = sc.exit_code(task)
        tail = await self._tail(service_id)
        why = (f"exited at once with code {code}" if code is not None
               else f"did not start: {sc.task_error(task)}")
        return StartError(f"{process}.{index} {why}" + (f":\n{tail}" if tail else ""))

    async def _task_ref(self, service: Mapping[str, Any], task: Mapping[str, Any]) -> InstanceRef:
        labels = (service.get("Spec") or {}).get("Labels") or {}
        return InstanceRef(id=str(service["ID"]), process=labels.get(dc.LABEL_PROCESS, ""),
                           release=int(labels.get(dc.LABEL_RELEASE, "0")),
                           host=await self._node_address(str(task.get("NodeID", ""))),
                           port=sc.published_port(task))

    async def stop_instance(self, ref: InstanceRef, grace: float) -> None:
        """Stop (SIGTERM, grace, SIGKILL) and remove an instance's service; gone is fine."""
        await self._delete(ref.id, grace)
        logger.info("stopped", id=ref.id[:12], process=ref.process, release=ref.release)

    async def list_instances(self, app: str) -> list[InstanceRef]:
        """The app's instances whose task runs, found by their services' labels."""
        refs = []
        for service in await self._services(dc.app_instances(app)):
            task = await self._task(str(service["ID"]))
            if task is not None and sc.task_state(task) == sc.RUNNING:
                refs.append(await self._task_ref(service, task))
        return refs

    async def follow_output(self, app: str, ref: InstanceRef,
                            cursor: str | None = None) -> AsyncIterator[OutputLine]:
        """The service's log by lines, after the time (ns since the epoch) `cursor` names."""
        after = output.file_cursor(cursor)
        chunks = await self._log_stream(ref.id, stdout=True, stderr=True,
                                        since=after // 1_000_000_000)
        async for line in output.timed_lines(chunks, after):
            yield line

    async def _logs(self, service_id: str, **params: Any) -> list[str]:  # noqa: ANN401
        """A service's log so far, as the chunks the engine sent."""
        # aiodocker types the non-following call as returning str; it returns a coroutine.
        got = await cast("Awaitable[list[str]]", self.docker.services.logs(service_id, **params))
        return got

    async def _log_stream(self, service_id: str, **params: Any) -> AsyncIterator[str]:  # noqa: ANN401
        stream = self.docker.services.logs(service_id, follow=True, timestamps=True, **params)
        assert not isinstance(stream, str)  # noqa: S101 (follow=True always streams)
        return stream

    # ------------------------------------------------------------ one-offs

    async def run_oneoff(self, spec: OneOffSpec, log: LogSink,
                         cancel: asyncio.Event | None = None) -> OneOffResult:
        """Run one command as a Swarm job of one task (or the one a crashed runner left);
        a predeploy to commit runs as a container of this engine."""
        if spec.commit:
            return await super().run_oneoff(spec, log, cancel)
        found = await self._services(dc.oneoff_identity(spec))
        if found:
            service_id = str(found[0]["ID"])
            logger.info("re-attaching", app=spec.app, deployment_id=spec.deployment_id,
                        container=spec.container)
        else:
            service_id = await self._create_service(spec.app,
                                                    sc.oneoff_service(spec, self.confinement))
        started = time.time()
        logger.info("running", app=spec.app, deployment_id=spec.deployment_id,
                    release=spec.release, container=spec.container)
        seen: dict[str, int] = {"out": 0, "err": 0}  # newest line time given, per stream
        pumps = [asyncio.create_task(self._pump_service(service_id, log, stream, seen))
                 for stream in ("out", "err")]
        try:
            exit_code, timed_out, cancelled = await self._wait_task(service_id, spec, cancel)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
        # What the followers had not delivered when the task ended, from the whole log.
        for stream in ("out", "err"):
            await self._catch_up(service_id, log, stream, seen)
        await self._delete(service_id, 0.0)
        duration = time.time() - started
        logger.info("ran", app=spec.app, deployment_id=spec.deployment_id, release=spec.release,
                    container=spec.container, exit_code=exit_code, timed_out=timed_out,
                    cancelled=cancelled, duration=round(duration, 3))
        return OneOffResult(exit_code=exit_code, duration=duration, timed_out=timed_out,
                            cancelled=cancelled)

    async def _wait_task(self, service_id: str, spec: OneOffSpec,
                         cancel: asyncio.Event | None) -> tuple[int, bool, bool]:
        """Wait for the task's end, the timeout or cancel: (exit code, timed out, cancelled)."""
        deadline = time.monotonic() + spec.timeout
        while True:
            task = await self._task(service_id)
            if task is not None and sc.task_state(task) in sc.ENDED:
                code = sc.exit_code(task)
                if code is None or (code == 0 and sc.task_state(task) != "complete"):
                    raise StartError(f"{spec.container} did not run: {sc.task_error(task)}")
                return code, False, False
            cancelled = cancel is not None and cancel.is_set()
            if cancelled or time.monotonic() >= deadline:
                await self._delete(service_id, spec.kill_grace)
                return TIMEOUT_EXIT_CODE, not cancelled, cancelled
            await asyncio.sleep(POLL)

    async def _pump_service(self, service_id: str, log: LogSink, stream: str,
                            seen: dict[str, int]) -> None:
        """Follow one output stream of a job's task into the log, by lines."""
        chunks = await self._log_stream(service_id, stdout=stream == "out",
                                        stderr=stream == "err")
        async for raw in output.chunk_lines(chunks):
            await self._give(raw, log, stream, seen)

    async def _catch_up(self, service_id: str, log: LogSink, stream: str,
                        seen: dict[str, int]) -> None:
        with contextlib.suppress(DockerError):
            lines = await self._logs(service_id, stdout=stream == "out",
                                     stderr=stream == "err", timestamps=True)
            for raw in "".join(lines).split("\n"):
                await self._give(raw, log, stream, seen)

    @staticmethod
    async def _give(raw: str, log: LogSink, stream: str, seen: dict[str, int]) -> None:
        found = output.docker_line(raw)
        if found is not None and found[0] > seen[stream]:
            seen[stream] = found[0]
            await log.line(found[1], stream)

    # ------------------------------------------------------------ the whole app

    async def remove_app(self, app: str) -> list[str]:
        """Remove the app's services, then what the docker runtime removes."""
        removed = []
        for service in await self._services({dc.LABEL_APP: app}):
            await self._delete(str(service["ID"]), 0.0)
            removed.append(f"service {(service.get('Spec') or {}).get('Name', service['ID'])}")
        removed += await super().remove_app(app)
        await DockerRuntime._release_network(self, app)  # noqa: SLF001 (the docker runtime's own)
        return removed
