"""STAND-IN for Cloud Storage's JSON API, the part the services use: single-request media
uploads (with the ifGenerationMatch=0 precondition), object metadata, downloads (alt=media),
listing by prefix and deletion. Objects live in memory; the requests' bearer tokens are kept
so a test can check what identity the services wrote with."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse


@dataclass
class StoredObject:
    data: bytes
    content_type: str
    generation: int
    updated: float


def _error(status: int, message: str) -> JSONResponse:
    # The JSON API's error shape (cloud.google.com/storage/docs/json_api/v1/status-codes).
    return JSONResponse({"error": {"code": status, "message": message}}, status_code=status)


def _resource(bucket: str, name: str, obj: StoredObject) -> dict[str, object]:
    return {
        "kind": "storage#object",
        "bucket": bucket,
        "name": name,
        "size": str(len(obj.data)),
        "contentType": obj.content_type,
        "generation": str(obj.generation),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(obj.updated)),
    }


def create_app() -> FastAPI:
    app = FastAPI(title="Cloud Storage JSON API stand-in")
    objects: dict[tuple[str, str], StoredObject] = {}
    generations = itertools.count(1)
    app.state.objects = objects
    app.state.tokens = []

    @app.middleware("http")
    async def remember_token(request: Request, call_next):  # type: ignore[no-untyped-def]
        app.state.tokens.append(request.headers.get("authorization"))
        return await call_next(request)

    @app.post("/upload/storage/v1/b/{bucket}/o")
    async def upload(bucket: str, request: Request) -> Response:
        query = request.query_params
        if query.get("uploadType") != "media" or not query.get("name"):
            return _error(400, "only uploadType=media with a name is served by this stand-in")
        key = (bucket, query["name"])
        if query.get("ifGenerationMatch") == "0" and key in objects:
            return _error(412, "At least one of the pre-conditions you specified did not hold.")
        obj = StoredObject(
            await request.body(),
            request.headers.get("content-type", "application/octet-stream"),
            next(generations),
            time.time(),
        )
        objects[key] = obj
        return JSONResponse(_resource(bucket, query["name"], obj))

    @app.get("/storage/v1/b/{bucket}/o")
    async def listing(bucket: str, prefix: str = "") -> Response:
        items = [_resource(b, n, o) for (b, n), o in sorted(objects.items()) if b == bucket and n.startswith(prefix)]
        return JSONResponse({"kind": "storage#objects", "items": items})

    @app.get("/storage/v1/b/{bucket}/o/{name:path}")
    async def read(bucket: str, name: str, alt: str = "json") -> Response:
        obj = objects.get((bucket, name))
        if obj is None:
            return _error(404, f"No such object: {bucket}/{name}")
        if alt == "media":
            return Response(obj.data, media_type=obj.content_type)
        return JSONResponse(_resource(bucket, name, obj))

    @app.delete("/storage/v1/b/{bucket}/o/{name:path}")
    async def delete(bucket: str, name: str) -> Response:
        if objects.pop((bucket, name), None) is None:
            return _error(404, f"No such object: {bucket}/{name}")
        return Response(status_code=204)

    return app
