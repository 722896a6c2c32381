"""The docker runtime: images from the app's Dockerfile, one-offs and instances as containers."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiodocker
import structlog
from aiodocker.containers import DockerContainer
from aiodocker.exceptions import DockerError, DockerStreamError

from dockyard.contract.events import InstanceRef
from dockyard.contract.plan import Buildpack
from dockyard.plan import node, python
from dockyard.runtime import docker_config as dc
from dockyard.runtime import generated, output
from dockyard.runtime.base import (
    TIMEOUT_EXIT_CODE,
    BuildError,
    InstanceSpec,
    LogSink,
    OneOffResult,
    OneOffSpec,
    OutputLine,
    StartError,
)
from dockyard.runtime.buildpacks import BuildStepFailed, MissingTool, first_error
from dockyard.runtime.health import TCP_SETTLE

logger = structlog.get_logger(__name__)

# After the container ended, how long its log streams may take to deliver their last bytes.
LOG_DRAIN_TIMEOUT = 5.0
# The classic builder's own lines, never what went wrong in a step.
_BUILDER_CHATTER = re.compile(r"^(Step \d+/\d+ :| ---> |Removing intermediate container|"
                              r"Successfully (built|tagged))")
# How many log lines a StartError carries.
START_ERROR_TAIL = 20


def _started_at(state: dict[str, Any]) -> float | None:
    """The engine's StartedAt as a wall-clock timestamp (None when never started)."""
    raw = str(state.get("StartedAt") or "")
    if not raw or raw.startswith("0001-"):
        return None
    # The engine writes nanoseconds; fromisoformat takes at most microseconds.
    main, _, frac = raw.rstrip("Z").partition(".")
    stamp = datetime.fromisoformat(main).replace(tzinfo=UTC).timestamp()
    return stamp + (float(f"0.{frac}") if frac else 0.0)


class DockerRuntime:
    """Runs apps as containers of a Docker engine through its API (aiodocker)."""

    name = "docker"
    tcp_settle = TCP_SETTLE  # docker-proxy accepts on a published port for the container

    def __init__(self, docker: aiodocker.Docker | None = None, host_ip: str = "127.0.0.1",
                 start_settle: float = 0.5, confinement: dc.Confinement = dc.DEFAULTS,
                 images: generated.BaseImages | None = None) -> None:
        self._owns = docker is None
        self.images = images or generated.BaseImages()
        self._versions: dict[str, str] = {}  # base image id -> its interpreter's version
        self._docker = docker
        self.host_ip = host_ip
        self.confinement = confinement
        # How long a fresh instance must stay up before it counts as started, not crashed.
        self.start_settle = start_settle

    @property
    def docker(self) -> aiodocker.Docker:
        """The engine client (created on first use, inside the running loop)."""
        if self._docker is None:
            self._docker = aiodocker.Docker()
        return self._docker

    async def close(self) -> None:
        """Close the engine session if this runtime opened it."""
        if self._owns and self._docker is not None:
            await self._docker.close()
            self._docker = None

    # ------------------------------------------------------------ build

    async def build(self, app: str, build_id: str, source: Path, log: LogSink, *,
                    dockerfile: str = "Dockerfile", command: str | None = None,
                    time_limit: float = 1800, buildpack: Buildpack | None = None) -> str:
        """Build the source's Dockerfile (or one generated from its detected build plan) into
        dockyard/<app>:<build_id>; returns the image id."""
        # `command` is the process runtime's build step; a Dockerfile carries its own RUNs.
        del command
        build = buildpack or Buildpack()
        context = dc.build_context(source)
        if not (source / dockerfile).is_file():
            if build.language == "none":
                raise BuildError(f"no {dockerfile} in the source, and no app Dockyard can build "
                                 "without one (requirements.txt, pyproject.toml, package.json, "
                                 "index.html)")
            image = generated.base_image(build, self.images)
            await self._check_version(build, image, log)
            text = generated.generate(build, image)
            await log.line(f"no {dockerfile}: generated one from the build plan ({image})")
            for line in text.splitlines():
                await log.line(f"  {line}")
            ignore = source / ".dockerignore"
            context = generated.with_files(context, {
                generated.DOCKERFILE: text.encode(),
                ".dockerignore": generated.dockerignore(
                    ignore.read_bytes() if ignore.is_file() else None)})
            dockerfile = generated.DOCKERFILE
        tag = dc.image_tag(app, build_id)
        logger.info("building", app=app, build_id=build_id, tag=tag, context_bytes=len(context))
        tail: list[str] = []
        try:
            async with asyncio.timeout(time_limit):
                image_id = await self._stream_build(context, dockerfile, tag,
                                                    dc.build_labels(app, build_id), log, tail)
        except TimeoutError:
            raise BuildError(f"docker build timed out after {time_limit:g}s") from None
        except BuildError as exc:
            step = generated.failed_step(build, str(exc)) if dockerfile == generated.DOCKERFILE \
                else None
            if step is None:
                raise
            code = re.search(r"non-zero code: (\d+)", str(exc))
            raise BuildStepFailed(step, int(code.group(1)) if code else 1,
                                  first_error(tail)) from None
        if image_id is None:
            image_id = str((await self.docker.images.inspect(tag))["Id"])
        logger.info("built", app=app, build_id=build_id, tag=tag, image=image_id)
        return image_id

    async def _check_version(self, build: Buildpack, image: str, log: LogSink) -> None:
        """Refuse a base image whose interpreter is not the version the app asks for."""
        probe = generated.version_probe(build)
        if probe is None:
            return
        try:
            image_id = str((await self.docker.images.inspect(image))["Id"])
        except DockerError as exc:
            raise MissingTool(f"{build.version_file}: asks for {build.language} "
                              f"{build.version}, and the base image {image} is not here "
                              f"({exc.message}); build or pull it, or set "
                              f"DOCKYARD_{build.language.upper()}_IMAGE") from None
        if image_id not in self._versions:
            self._versions[image_id] = await self._probe(image, probe)
        have = self._versions[image_id]
        await log.line(f"{build.language} {have} in {image}")
        if build.language == "python":
            asked = (str(build.version), str(build.version_file))
            try:
                python.choose_interpreter(asked, [(image, have)])
            except LookupError as exc:
                raise MissingTool(str(exc)) from None
        elif (why := node.check_engine(str(build.version), have)) is not None:
            raise MissingTool(f"{why} (base image {image})")

    async def _probe(self, image: str, argv: list[str]) -> str:
        """What a command prints in a throwaway container of an image (no network)."""
        container = await self.docker.containers.create(
            {"Image": image, "Cmd": argv, "NetworkDisabled": True,
             "HostConfig": {"NetworkMode": "none"},
             "Labels": {"dockyard.role": "probe"}})
        try:
            await container.start()
            await container.wait(timeout=60)
            out = await container.log(stdout=True, stderr=False)
        finally:
            await container.delete(force=True)
        return "".join(out).strip()

    async def _stream_build(self, context: bytes, dockerfile: str, tag: str,
                            labels: dict[str, str], log: LogSink,
                            tail: list[str] | None = None) -> str | None:
        """Send the context, write the builder's output to the log; the aux image id if any."""
        image_id: str | None = None
        stream: AsyncIterator[dict[str, Any]] = self.docker.images.build(
            fileobj=io.BytesIO(context), encoding="identity", path_dockerfile=dockerfile,
            tag=tag, labels=labels, rm=True, forcerm=True, stream=True)
        try:
            async for entry in stream:
                if "errorDetail" in entry or "error" in entry:
                    message = (entry.get("errorDetail") or {}).get("message") or entry["error"]
                    raise BuildError(str(message))
                for text in str(entry.get("stream") or "").splitlines():
                    if text.strip():
                        await log.line(text)
                        if tail is not None and not _BUILDER_CHATTER.match(text):
                            tail.append(text)
                            del tail[:-40]
                if entry.get("status"):
                    await log.line(str(entry["status"]))
                aux = entry.get("aux")
                if isinstance(aux, dict) and aux.get("ID"):
                    image_id = str(aux["ID"])
        except DockerStreamError as exc:
            await log.line(exc.message, "err")
            raise BuildError(exc.message) from None
        except DockerError as exc:
            raise BuildError(f"docker build failed: {exc.message}") from None
        return image_id

    async def remove_artifact(self, artifact: str) -> None:
        """Delete an image; one still in use or already gone is left alone."""
        try:
            await self.docker.images.delete(artifact)
        except DockerError as exc:
            if exc.status not in (404, 409):
                raise
            logger.debug("image kept", image=artifact, reason=exc.message)

    async def remove_app(self, app: str) -> list[str]:
        """Remove every container (one-offs too), image and the network labelled with the app:
        what the labels say is the app's, never an image an event names."""
        removed: list[str] = []
        for container in await self.docker.containers.list(
                all=True, filters=json.dumps(dc.label_filters({dc.LABEL_APP: app}))):
            await self._remove(container)
            removed.append(f"container {container.id[:12]}")
        # A parent image cannot go while a child (a predeploy's commit) exists: children go
        # first, so a few passes remove a chain of any order the engine lists it in.
        for _ in range(8):
            images = await self.docker.images.list(
                filters={"label": [f"{dc.LABEL_APP}={app}"]})
            blocked = False
            for image in images:
                try:
                    await self.docker.images.delete(str(image["Id"]), force=True)
                except DockerError as exc:
                    if exc.status == 409:  # it has a child: the next pass
                        blocked = True
                    elif exc.status != 404:
                        raise
                    continue
                tags = [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"]
                removed.append(f"image {tags[0] if tags else str(image['Id'])[:19]}")
            if not blocked:
                break
        networks = await self.docker.networks.list(
            filters={"label": [f"{dc.LABEL_APP}={app}"]})
        await self._release_network(app)
        removed += [f"network {n['Name']}" for n in networks]
        return removed

    # ------------------------------------------------------------ one-off

    async def run_oneoff(self, spec: OneOffSpec, log: LogSink,
                         cancel: asyncio.Event | None = None) -> OneOffResult:
        """Run one command in a fresh container (or the one a crashed runner left behind)."""
        container = await self._find_oneoff(spec)
        if container is None:
            try:
                container = await self._create(
                    spec.app, dc.oneoff_config(spec, self.confinement), dc.oneoff_name(spec))
            except DockerError as exc:
                if exc.status != 409:
                    raise
                # Another runner created it between our look-up and create: attach to it.
                container = await self.docker.containers.get(dc.oneoff_name(spec))
        else:
            logger.info("re-attaching", app=spec.app, deployment_id=spec.deployment_id,
                     container=spec.container)
        info = await container.show()
        state = info["State"]
        if state.get("Status") == "created":
            await container.start()
            info = await container.show()
            state = info["State"]
        started = _started_at(state) or time.time()
        logger.info("running", app=spec.app, deployment_id=spec.deployment_id,
                 release=spec.release, container=spec.container)

        pumps = [asyncio.create_task(self._pump(container, log, stream))
                 for stream in ("out", "err")]
        timed_out = cancelled = False
        try:
            if state.get("Running"):
                remaining = spec.timeout - (time.time() - started)
                exit_code, timed_out, cancelled = await self._wait(
                    container, remaining, spec.kill_grace, cancel)
            else:
                exit_code = int(state.get("ExitCode", 0))
            await self._drain(pumps)
        finally:
            # On a cancelled task (a runner going away) the container keeps running, so the
            # next runner can attach to it; only the log followers are stopped.
            for pump in pumps:
                pump.cancel()

        artifact: str | None = None
        try:
            if spec.commit and exit_code == 0 and not (timed_out or cancelled):
                artifact = await self._commit(container, spec, info)
        finally:
            await self._remove(container, spec.app)
        duration = time.time() - started
        logger.info("ran", app=spec.app, deployment_id=spec.deployment_id, release=spec.release,
                 container=spec.container, exit_code=exit_code, timed_out=timed_out,
                 cancelled=cancelled, duration=round(duration, 3))
        return OneOffResult(exit_code=exit_code, duration=duration, timed_out=timed_out,
                            cancelled=cancelled, artifact=artifact)

    async def _find_oneoff(self, spec: OneOffSpec) -> DockerContainer | None:
        """The container of this command of this deployment, if a previous runner made it."""
        found = await self.docker.containers.list(
            all=True, filters=json.dumps(dc.label_filters(dc.oneoff_identity(spec))))
        return found[0] if found else None

    async def _wait(self, container: DockerContainer, remaining: float, grace: float,
                    cancel: asyncio.Event | None) -> tuple[int, bool, bool]:
        """Wait for the exit, the timeout or cancel; returns (exit code, timed out, cancelled)."""
        waiter = asyncio.ensure_future(container.wait())
        watchers: set[asyncio.Future[Any]] = {waiter}
        canceller = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
        if canceller is not None:
            watchers.add(canceller)
        try:
            await asyncio.wait(watchers, timeout=max(remaining, 0.0),
                               return_when=asyncio.FIRST_COMPLETED)
            if waiter.done():
                return int(waiter.result()["StatusCode"]), False, False
            cancelled = canceller is not None and canceller.done()
            # SIGTERM, up to grace seconds, then SIGKILL (the engine's stop does exactly that).
            await self._stop(container, grace)
            await waiter
            return TIMEOUT_EXIT_CODE, not cancelled, cancelled
        finally:
            for fut in watchers:
                fut.cancel()

    async def _pump(self, container: DockerContainer, log: LogSink, stream: str) -> None:
        """Follow one output stream of a container (from its start) into the log, by lines."""
        chunks: AsyncIterator[str] = container.log(
            stdout=stream == "out", stderr=stream == "err", follow=True)
        async for text in output.chunk_lines(chunks):
            await log.line(text, stream)

    async def _drain(self, pumps: list[asyncio.Task[None]]) -> None:
        """Let the log followers deliver what the ended container wrote last."""
        done, _ = await asyncio.wait(pumps, timeout=LOG_DRAIN_TIMEOUT)
        for pump in done:
            if not pump.cancelled() and pump.exception() is not None:
                logger.warning("log stream failed", error=str(pump.exception()))

    async def _commit(self, container: DockerContainer, spec: OneOffSpec,
                      info: dict[str, Any]) -> str:
        """Commit the predeploy container's files into a new image with the original config."""
        image = await self.docker.images.inspect(spec.artifact)
        config = dc.commit_config(image.get("Config") or {}, spec.env,
                                  info["Config"].get("Labels") or {}, dc.oneoff_name(spec))
        repository, _, tag = dc.predeploy_tag(spec.app, spec.deployment_id).partition(":")
        result = await container.commit(repository=repository, tag=tag, config=config,
                                        message=f"dockyard {spec.phase}: {spec.command}")
        return str(result["Id"])

    async def _stop(self, container: DockerContainer, grace: float) -> None:
        """Stop a container (SIGTERM, grace, SIGKILL); one already gone is fine."""
        try:
            await container.stop(t=dc.stop_timeout(grace))
        except DockerError as exc:
            if exc.status not in (304, 404):
                raise

    async def _remove(self, container: DockerContainer, app: str | None = None) -> None:
        """Remove a container (one already gone is fine); then the app's network if unused."""
        try:
            await container.delete(force=True)
        except DockerError as exc:
            # 409: removal already in progress.
            if exc.status not in (404, 409):
                raise
        if app is not None:
            await self._release_network(app)

    # ------------------------------------------------------------ the app's network

    async def _create(self, app: str, config: dict[str, Any], name: str) -> DockerContainer:
        """Create a container on the app's network (made first when missing)."""
        await self._ensure_network(app)
        try:
            return await self.docker.containers.create(config, name=name)
        except DockerError as exc:
            if exc.status != 404 or "network" not in exc.message:
                raise
        # The app's last container went away and took the network with it meanwhile.
        await self._ensure_network(app)
        return await self.docker.containers.create(config, name=name)

    async def _ensure_network(self, app: str) -> None:
        """The app's own bridge network, created on first use (labelled with the app)."""
        try:
            await self.docker.networks.get(dc.network_name(app))
            return
        except DockerError as exc:
            if exc.status != 404:
                raise
        try:
            await self.docker.networks.create(self._network_config(app))
            logger.info("network created", app=app, network=dc.network_name(app))
        except DockerError as exc:
            if exc.status != 409:  # another service created it first
                raise

    def _network_config(self, app: str) -> dict[str, Any]:
        return dc.network_config(app)

    async def _release_network(self, app: str) -> None:
        """Remove the app's network once no container of the app (running or not) is left."""
        left = await self.docker.containers.list(
            all=True, filters=json.dumps(dc.label_filters({dc.LABEL_APP: app})))
        if left:
            return
        try:
            network = await self.docker.networks.get(dc.network_name(app))
            await network.delete()
        except DockerError as exc:
            # Gone already, or a container of the app was just attached to it: it stays.
            if exc.status not in (403, 404, 409):
                raise
            return
        logger.info("network removed", app=app, network=dc.network_name(app))

    # ------------------------------------------------------------ instances

    async def start_instance(self, spec: InstanceSpec) -> InstanceRef:
        """Start one instance (or return the running one a previous scheduler started)."""
        for existing in await self.docker.containers.list(
                all=True, filters=json.dumps(dc.label_filters(dc.instance_identity(spec)))):
            info = await existing.show()
            if info["State"].get("Running"):
                logger.info("re-attaching", app=spec.app, deployment_id=spec.deployment_id,
                         process=spec.process, index=spec.index)
                return self._ref(info, spec.process, spec.release)
            # A dead leftover would hold the name; it is replaced.
            await self._remove(existing)

        container = await self._create(
            spec.app, dc.instance_config(spec, self.host_ip, self.confinement),
            dc.instance_name(spec))
        try:
            await container.start()
            exited = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(container.wait(), self.start_settle)
                exited = True
            info = await container.show()
            if exited or not info["State"].get("Running"):
                lines = await container.log(stdout=True, stderr=True, tail=START_ERROR_TAIL)
                tail = "".join(lines).strip()
                code = info["State"].get("ExitCode")
                raise StartError(f"{spec.process}.{spec.index} exited at once with code {code}"
                                 + (f":\n{tail}" if tail else ""))
        except BaseException:
            await self._remove(container, spec.app)
            raise
        ref = self._ref(info, spec.process, spec.release)
        logger.info("started", app=spec.app, deployment_id=spec.deployment_id,
                 release=spec.release, process=spec.process, index=spec.index, port=ref.port)
        return ref

    def _ref(self, info: dict[str, Any], process: str, release: int) -> InstanceRef:
        """The InstanceRef of an inspected container."""
        return InstanceRef(id=str(info["Id"]), process=process, release=release,
                           host=self.host_ip, port=dc.published_port(info))

    async def stop_instance(self, ref: InstanceRef, grace: float) -> None:
        """Stop (SIGTERM, grace, SIGKILL) and remove an instance; a gone one is fine."""
        container = self.docker.containers.container(ref.id)
        try:
            app: str | None = (await container.show())["Config"]["Labels"].get(dc.LABEL_APP)
        except DockerError as exc:
            if exc.status != 404:
                raise
            app = None
        await self._stop(container, grace)
        await self._remove(container, app)
        logger.info("stopped", id=ref.id[:12], process=ref.process, release=ref.release)

    async def follow_output(self, app: str, ref: InstanceRef,
                            cursor: str | None = None) -> AsyncIterator[OutputLine]:
        """The container's log (stdout and stderr together) by lines, after the time (ns since
        the epoch) `cursor` names, then live until the container stops."""
        after = output.file_cursor(cursor)
        params: dict[str, Any] = {"timestamps": True}
        if after:
            params["since"] = str(after // 1_000_000_000)
        container = self.docker.containers.container(ref.id)
        chunks: AsyncIterator[str] = container.log(stdout=True, stderr=True, follow=True,
                                                   **params)
        async for line in output.timed_lines(chunks, after):
            yield line

    async def list_instances(self, app: str) -> list[InstanceRef]:
        """The app's running instance containers, found by their labels."""
        found = await self.docker.containers.list(
            filters=json.dumps(dc.label_filters(dc.app_instances(app), running=True)))
        refs = []
        for container in found:
            labels: dict[str, str] = container["Labels"] or {}
            refs.append(InstanceRef(
                id=str(container["Id"]), process=labels.get(dc.LABEL_PROCESS, ""),
                release=int(labels.get(dc.LABEL_RELEASE, "0")), host=self.host_ip,
                port=dc.listed_port({"Ports": container["Ports"]})))
        return refs
