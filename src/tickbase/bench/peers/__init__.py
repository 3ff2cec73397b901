"""Peer queues for ``tickbase bench queue --peers``.

PgQueuer and Procrastinate are optional dependencies (the ``bench`` extra): their
modules import them only when an adapter is built or a worker runs, so tickbase's own
benchmark works without them. The plain SKIP LOCKED loop needs only psycopg.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from typing import TYPE_CHECKING

from tickbase.bench.peers._common import INSTALL_HINT, PeerUnavailableError

if TYPE_CHECKING:
    from tickbase.bench.harness import QueueAdapter

__all__ = ["INSTALL_HINT", "PeerUnavailableError", "peer_adapters", "peer_versions"]

# Import name -> distribution name of the optional peers.
OPTIONAL_PEERS = {"pgqueuer": "pgqueuer", "procrastinate": "procrastinate"}


def peer_adapters() -> list[QueueAdapter]:
    """Return the adapters of all peers: PgQueuer, Procrastinate, then the plain loop.

    Raises :class:`PeerUnavailableError`, naming the missing packages and the install
    command, when PgQueuer or Procrastinate is not installed.
    """
    missing = [name for name in OPTIONAL_PEERS if importlib.util.find_spec(name) is None]
    if missing:
        raise PeerUnavailableError(
            f"benchmark peers not installed: {', '.join(missing)}; "
            f"install the benchmark extras with: {INSTALL_HINT}"
        )
    from tickbase.bench.peers.pgqueuer_peer import PgQueuerAdapter
    from tickbase.bench.peers.plain_peer import PlainAdapter
    from tickbase.bench.peers.procrastinate_peer import ProcrastinateAdapter

    return [PgQueuerAdapter(), ProcrastinateAdapter(), PlainAdapter()]


def peer_versions() -> dict[str, str]:
    """Return the installed version of each optional peer ("not installed" if absent)."""
    versions: dict[str, str] = {}
    for name, distribution in OPTIONAL_PEERS.items():
        try:
            versions[name] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
