"""The gateway's OpenAPI document, with the request bodies its routes read by hand."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel


def with_bodies(app: FastAPI, models: tuple[type[BaseModel], ...]) -> Callable[[], dict[str, Any]]:
    """``app``'s ``openapi``, whose components.schemas hold ``models`` too."""
    schemas: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update({**schema.pop("$defs", {}), model.__name__: schema})

    def openapi() -> dict[str, Any]:
        if not app.openapi_schema:
            document = get_openapi(title=app.title, version=app.version, routes=app.routes)
            document.setdefault("components", {}).setdefault("schemas", {}).update(schemas)
            app.openapi_schema = document
        return app.openapi_schema

    return openapi


def read_by_hand(model: type[BaseModel]) -> dict[str, Any]:
    """A route's ``openapi_extra`` for the JSON body it reads by hand (after authentication,
    within a size limit), validated as ``model`` (in the schemas ``with_bodies`` adds)."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
