"""The service layer: one module per capability (chargers, sites and tariffs, operations, local
lists, firmware, operator views), plain async functions over ``db/`` and the Temporal client.

The API routes and the ``polaris`` commands are thin callers of these functions, so a rule lives
in exactly one place. A service never reads HTTP requests or argv; it takes an
:class:`services.actor.Actor` for authorization decisions and the audit trail, and raises
:class:`services.errors.ServiceError` subclasses that both callers turn into their own errors.
"""
