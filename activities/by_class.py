"""Activities register by class: a process passes its activity objects, and every
``@activity.defn`` method of their classes is registered (worker.py, gateway/main.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def activity_name(fn: object) -> str | None:
    """The activity name ``fn`` is registered under, or None when it is no activity."""
    defn = getattr(fn, "__temporal_activity_definition", None)
    name = getattr(defn, "name", None)
    return name if isinstance(name, str) else None


def activities_of(*instances: object) -> list[Callable[..., Any]]:
    """Every ``@activity.defn`` method of these activity objects, bound to them.

    Activities register by class: an activity added to a class the worker instantiates is
    registered without touching this file, and a class with no activity at all (a wrong object
    passed here) fails at worker start, not when a workflow first calls it."""
    found: list[Callable[..., Any]] = []
    for obj in instances:
        cls = type(obj)
        methods = []
        for name in sorted(dir(cls)):
            if name.startswith("__"):
                continue
            own = getattr(cls, name, None)
            if activity_name(own) is not None:
                methods.append(getattr(obj, name))
            elif any(activity_name(vars(base).get(name)) for base in cls.__mro__[1:]):
                # An override that lost its @activity.defn would silently unregister it.
                raise TypeError(
                    f"{cls.__name__}.{name} overrides an activity without @activity.defn"
                )
        if not methods:
            raise TypeError(f"{cls.__name__} has no @activity.defn method")
        found.extend(methods)
    return found
