"""Static sites: an index.html and no Procfile, served by a built-in web process."""

from __future__ import annotations

from dockyard.contract.plan import Buildpack, ProcessType

INDEX = "index.html"
# The standard library's server in the release dir: on the host's python3 (process runtime) or
# the static base image's (docker). It listens on $PORT, on every address of its network.
WEB = ProcessType(name="web", command='exec python3 -m http.server "$PORT"',
                  source="static site (index.html)")


def buildpack() -> Buildpack:
    """A static site: nothing to install."""
    return Buildpack(language="static", detected=[INDEX])
