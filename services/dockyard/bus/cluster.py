"""A NATS JetStream cluster on one machine: N nats-server nodes on loopback, each the embedded
server of bus/embedded.py (NKey users, encrypted store, private data dir) plus a cluster block
whose routes are authenticated (bus/auth.py's route credentials, the same as `dockyard bus
init` writes into routes.conf for infra/nats/cluster).

It is how the tests run Dockyard on a cluster and kill a node of it; `DOCKYARD_NATS_URL` is
`url` (every node, comma-separated) and `DOCKYARD_BUS_REPLICAS` the cluster's size.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.bus.auth import cluster_routes, private_dir
from dockyard.bus.embedded import KEYS_DIR, EmbeddedNats, free_port, start_nats
from dockyard.bus.permissions import Permissions

CLUSTER_NAME = "dockyard"


@dataclass
class LocalCluster:
    """N nodes on loopback sharing one set of identities; any node can be killed and
    started again on its own store and ports."""

    root: Path
    permissions: Mapping[str, Permissions]
    ports: list[int]
    route_ports: list[int]
    nodes: list[EmbeddedNats | None] = field(default_factory=list)

    @property
    def keys_dir(self) -> Path:
        """The identities' seeds, shared by every node (DOCKYARD_NATS_KEYS)."""
        return self.root / KEYS_DIR

    @property
    def urls(self) -> list[str]:
        """Each node's client URL."""
        return [f"nats://127.0.0.1:{port}" for port in self.ports]

    @property
    def url(self) -> str:
        """Every node, comma-separated: a DOCKYARD_NATS_URL."""
        return ",".join(self.urls)

    def name(self, index: int) -> str:
        """The server name node `index` runs under (what stream_info's leader names)."""
        return f"dockyard-{self.ports[index]}"

    def cluster_block(self, index: int) -> dict[str, Any]:
        """Node index's `cluster` config: its route listener, the route credentials it
        accepts, and its routes to every node carrying them."""
        return {"name": CLUSTER_NAME, "listen": f"127.0.0.1:{self.route_ports[index]}",
                **cluster_routes(self.keys_dir,
                                 [f"127.0.0.1:{port}" for port in self.route_ports])}

    def start(self, index: int) -> EmbeddedNats:
        """Start node index (again) on its own store and ports."""
        node = start_nats(self.root / f"n{index + 1}", self.permissions, port=self.ports[index],
                          keys_dir=self.keys_dir, cluster=self.cluster_block(index))
        self.nodes[index] = node
        return node

    def kill(self, index: int) -> None:
        """SIGKILL node index, as a machine lost would leave it: no goodbye to its peers."""
        node = self.nodes[index]
        if node is None:
            return
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait(10)
        node.stop()  # forgets its record
        self.nodes[index] = None

    def stop(self) -> None:
        """Stop every node that runs."""
        for index, node in enumerate(self.nodes):
            if node is not None:
                node.stop()
                self.nodes[index] = None


def start_cluster(root: Path, permissions: Mapping[str, Permissions],
                  size: int = 3) -> LocalCluster:
    """Start `size` nodes under root (n1, n2, ...; seeds in root/bus) on free loopback ports.
    They listen once this returns; JetStream answers once they have elected a leader."""
    private_dir(root)
    cluster = LocalCluster(root=root, permissions=permissions,
                           ports=[free_port() for _ in range(size)],
                           route_ports=[free_port() for _ in range(size)],
                           nodes=[None] * size)
    try:
        for index in range(size):
            cluster.start(index)
    except BaseException:
        cluster.stop()
        raise
    return cluster
