"""What the gateway accepts for OpenAI's Batch API: an input file, checked line by line before
anything is stored, and a batch's creation request.

A line is OpenAI's batch request, parsed as services.servicekit.batch_lines does (where the
orchestrator parses it again to store it), with ``custom_id`` unique in the file and a body the
interactive route would accept, not streamed and within its bounds. A bad file is refused with
the first fault, naming its 1-based line and field:
``line 17: body.messages: List should have at least 1 item after validation``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.servicekit.batch_lines import InvalidFile, Storable, parse_line
from services.servicekit.jsonl import jsonl_lines

FILE_ID = r"^file-[0-9a-f]{24}$"
BATCH_ID = r"^batch_[0-9a-f]{24}$"
# platform.openai.com/docs/api-reference/batch/create: metadata is at most 16 pairs, keys of at
# most 64 characters, values of at most 512.
MetadataKey = Annotated[str, StringConstraints(max_length=64), Storable]
MetadataValue = Annotated[str, StringConstraints(max_length=512), Storable]


class BatchCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_file_id: Annotated[str, StringConstraints(pattern=FILE_ID)]
    endpoint: Literal["/v1/chat/completions"]
    completion_window: Literal["24h"]
    metadata: Annotated[dict[MetadataKey, MetadataValue], Field(max_length=16)] | None = None


class FileListQuery(BaseModel):
    """GET /v1/files's query (platform.openai.com/docs/api-reference/files/list): newest first
    by default, at most 10,000 a page, ``after`` the last id of the previous page."""

    purpose: Literal["batch", "batch_output"] | None = None  # the purposes a file here can have
    limit: int = Field(10_000, ge=1, le=10_000)
    order: Literal["asc", "desc"] = "desc"
    after: Annotated[str, StringConstraints(pattern=FILE_ID)] | None = None

    def params(self) -> dict[str, str]:
        """The query as the orchestrator is sent it."""
        return {name: str(value) for name, value in self.model_dump(exclude_none=True).items()}


class LineLimits(BaseModel):
    """The bounds the interactive route sets on one request, and the file's own."""

    max_lines: int
    max_line_bytes: int
    max_messages: int
    max_message_chars: int


def check_file(data: bytes, limits: LineLimits) -> int:
    """The number of requests in a valid input file; InvalidFile at the first fault."""
    seen: dict[str, int] = {}
    for number, raw in enumerate(jsonl_lines(data), start=1):
        if number > limits.max_lines:
            raise InvalidFile(f"the file has more than {limits.max_lines} lines")
        seen_at = seen.setdefault(_check_line(number, raw, limits), number)
        if seen_at != number:
            raise InvalidFile(f"line {number}: custom_id: the same as line {seen_at}'s; each must be unique")
    if not seen:
        raise InvalidFile("the file has no lines")
    return len(seen)


def _check_line(number: int, raw: bytes, limits: LineLimits) -> str:
    """The line's custom_id, if the line is a request the interactive route would take."""
    if len(raw) > limits.max_line_bytes:
        raise InvalidFile(f"line {number}: longer than {limits.max_line_bytes} bytes")
    if not raw.strip():
        raise InvalidFile(f"line {number}: empty; a batch file has one JSON request per line")
    try:
        raw.decode()
    except UnicodeDecodeError as err:
        raise InvalidFile(f"line {number}: not UTF-8 (byte {err.start + 1})") from None
    line = parse_line(number, raw)
    chat = line.body
    if chat.stream:
        raise InvalidFile(f"line {number}: body.stream: a batch request cannot be streamed")
    if len(chat.messages) > limits.max_messages:
        raise InvalidFile(f"line {number}: body.messages: at most {limits.max_messages} messages")
    for index, message in enumerate(chat.messages):
        if len(message.content) > limits.max_message_chars:
            raise InvalidFile(
                f"line {number}: body.messages[{index}].content: longer than {limits.max_message_chars} characters"
            )
    return line.custom_id
