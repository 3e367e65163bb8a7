"""The request body the gateway accepts: OpenAI's chat completions, within limits. Shared: the
orchestrator parses a batch's lines with it too (services.servicekit.batch_lines).

Bounds as OpenAI's API reference sets them (github.com/openai/openai-openapi, openapi.yaml,
CreateChatCompletionRequest): stop is one string or 1 to 4 of them (StopConfiguration),
temperature 0 to 2, top_p at most 1, presence and frequency penalties -2 to 2. Where OpenAI
sets no bound (the length of model, user, a message's name and stop strings; max_tokens)
the gateway sets one; where it allows what our backends do not serve (n up to 128, top_p
of 0) the gateway allows less. Fields it does not know (logit_bias, tools, functions, ...)
are refused, not passed on unchecked. Message count and length are settings, checked after
parsing.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StringConstraints, Tag

StopString = Annotated[str, StringConstraints(max_length=256)]
# The JSON type picks the branch, so an error is about the branch the client sent (pydantic
# would otherwise report both); the tags appear in error paths, which field_path leaves out.
UNION_TAGS = ("string", "array")
Stop = Annotated[
    Annotated[StopString, Tag("string")] | Annotated[list[StopString], Field(min_length=1, max_length=4), Tag("array")],
    Discriminator(lambda value: "array" if isinstance(value, list) else "string"),
]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\w./:-]+$")]
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1, le=131_072)
    max_completion_tokens: int | None = Field(None, ge=1, le=131_072)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)  # vLLM refuses 0
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    stop: Stop | None = None
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    n: Literal[1] | None = None
    user: Annotated[str, StringConstraints(max_length=256)] | None = None

    def forwarded(self) -> str:
        """The body as the model is sent it: the values as validated (``"10"`` sent for max_tokens
        is sent as 10), without the fields left out or sent as null."""
        return self.model_dump_json(exclude_none=True)


def field_path(loc: tuple[str | int, ...]) -> str:
    """A pydantic error location as OpenAI's errors name a parameter: messages[0].name."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part not in UNION_TAGS:
            path += f".{part}" if path else part
    return path
