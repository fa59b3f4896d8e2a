"""The spec language users write: Sandbox, RouteGroup, MeshPolicy."""
