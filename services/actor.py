"""Who asks a service for something: the API's principal or the CLI's operating-system user."""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    """``id``: the audit ``actor`` (a user id, or ``cli:<user>``); ``role``: ``admin``,
    ``operator`` or ``customer``; ``source``: where the request came from (client address, or
    ``cli@<host>``)."""

    id: str
    role: str
    source: str

    @classmethod
    def cli(cls) -> Actor:
        """The CLI runs on the platform's own hosts with its database credentials: an admin."""
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        return cls(id=f"cli:{user}", role="admin", source=f"cli@{socket.gethostname()}")
