"""The service layer's context for a request: the ``Services`` dependency."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from api.authz import Principal
from api.deps import AppState, get_state
from services.actor import Actor
from services.context import ServiceContext


def service_context(state: Annotated[AppState, Depends(get_state)]) -> ServiceContext:
    return ServiceContext(settings=state.settings, sessions=state.sessions, temporal=state.temporal)


Services = Annotated[ServiceContext, Depends(service_context)]


def actor_of(principal: Principal) -> Actor:
    """The service layer's actor for a principal the authorization layer let in."""
    return Actor(id=principal.actor, role=principal.role, source=principal.source or "api")
