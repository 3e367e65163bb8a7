"""A line of a batch input file, parsed the same way where the gateway checks an upload and
where the orchestrator stores a new batch's lines, so that what is stored is what was checked.

A line is OpenAI's batch request (platform.openai.com/docs/api-reference/batch/request-input):
``custom_id``, ``method`` POST, ``url`` /v1/chat/completions (the one endpoint served), and a
``body`` the chat route's own schema accepts, with its coercion: the body is stored, and sent
to the model, as the chat route sends it (ChatCompletionRequest.forwarded), never as written.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, ValidationError
from pydantic_core import PydanticCustomError

from services.servicekit.chat import ChatCompletionRequest, field_path
from services.servicekit.jsonl import jsonl_lines

# PostgreSQL's text and jsonb cannot hold NUL (postgresql.org/docs/current/datatype-character.html,
# /datatype-json.html): a string stored in either that has one would fail its INSERT.
NUL_REFUSED = "must not contain the NUL character (\\u0000), which cannot be stored"


class InvalidFile(ValueError):
    """The file cannot be a batch's input; the message names the line and the field."""


def _refuse_nul(text: str) -> str:
    if "\x00" in text:
        raise PydanticCustomError("nul_character", NUL_REFUSED)
    return text


# A string the database stores as text or in jsonb.
Storable = AfterValidator(_refuse_nul)


class BatchLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    custom_id: Annotated[str, StringConstraints(min_length=1, max_length=512), Storable]
    method: Literal["POST"]
    url: Literal["/v1/chat/completions"]
    body: ChatCompletionRequest


def parse_line(number: int, raw: bytes) -> BatchLine:
    """The 1-based line ``number``, validated; InvalidFile naming the line and field if it is not one."""
    try:
        line = BatchLine.model_validate_json(raw)
    except ValidationError as err:
        error = err.errors()[0]
        where = field_path(error["loc"])
        # The JSON parser counts within the line alone: its "line 1" would mislead.
        text = error["msg"].replace(" at line 1 column ", " at column ")
        raise InvalidFile(f"line {number}: {where + ': ' if where else ''}{text}") from None
    # The chat route sends the body's strings to the model only, so its schema lets NUL through;
    # a batch stores them in jsonb first.
    holding_nul = _nul_at(line.body.model_dump(exclude_none=True), "body")
    if holding_nul:
        raise InvalidFile(f"line {number}: {holding_nul}: {NUL_REFUSED}")
    return line


def stored_requests(data: bytes) -> list[tuple[str, str]]:
    """Each line's custom_id and body as the model is to be sent it, in the file's order."""
    requests = []
    for number, raw in enumerate(jsonl_lines(data), start=1):
        line = parse_line(number, raw)
        requests.append((line.custom_id, line.body.forwarded()))
    return requests


def _nul_at(value: Any, path: str) -> str | None:
    """The path (as field_path writes it) of the first string in ``value`` that holds NUL."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _nul_at(item, f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}")
        if found:
            return found
    return None
