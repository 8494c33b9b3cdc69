"""A stateful, contract-checked stand-in for the Lago billing API.

Entry points: :func:`sandbox.lago.app.create_app`, :func:`sandbox.lago.server.serve` and
``python -m sandbox.lago``.
"""

from sandbox.lago.config import FaultSpec, SandboxConfig

__all__ = ["FaultSpec", "SandboxConfig"]
