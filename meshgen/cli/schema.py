"""``meshgen schema``: JSON Schema of the spec kinds, for editors and CI linters."""

from __future__ import annotations

import json

import click
from pydantic import BaseModel

from meshgen.spec.models import MeshPolicy, RouteGroup, Sandbox

_MODELS: dict[str, type[BaseModel]] = {"Sandbox": Sandbox, "RouteGroup": RouteGroup, "MeshPolicy": MeshPolicy}


@click.command("schema")
@click.argument("kind", type=click.Choice(sorted(_MODELS)), required=False)
def schema_command(kind: str | None) -> None:
    """Print the JSON Schema of a spec kind (all kinds when KIND is omitted).

    \b
    Examples:
      meshgen schema Sandbox > sandbox.schema.json
      # VS Code (redhat.vscode-yaml): "yaml.schemas": {"sandbox.schema.json": "sandboxes/*.yaml"}
      meshgen schema            # {"Sandbox": ..., "RouteGroup": ..., "MeshPolicy": ...}
    """
    if kind is not None:
        schema = _MODELS[kind].model_json_schema(by_alias=True)
    else:
        schema = {name: model.model_json_schema(by_alias=True) for name, model in sorted(_MODELS.items())}
    click.echo(json.dumps(schema, indent=2, sort_keys=True))


COMMANDS = (schema_command,)
