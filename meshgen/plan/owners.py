"""Who a routing key belongs to: a sandbox, or a route group."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from meshgen.ownership import ROUTE_PREFIX


class OwnerKind(enum.StrEnum):
    """Who a routing key belongs to."""

    SANDBOX = "Sandbox"
    ROUTE_GROUP = "RouteGroup"


@dataclass(frozen=True)
class Owner:
    """A routing key and the sandbox or route group it belongs to."""

    kind: OwnerKind
    name: str
    routing_key: str

    @property
    def order(self) -> tuple[int, str]:
        """Sandboxes before route groups, then by name: the order of an owner's routes in a table."""
        return (0 if self.kind is OwnerKind.SANDBOX else 1, self.name)

    @property
    def route_prefix(self) -> str:
        """Prefix of the names of routes this owner adds (``meshgen-<sandbox>`` / ``meshgen-rg-<group>``)."""
        return f"{ROUTE_PREFIX}{self.name}" if self.kind is OwnerKind.SANDBOX else f"{ROUTE_PREFIX}rg-{self.name}"
