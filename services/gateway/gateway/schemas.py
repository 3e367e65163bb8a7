"""The request body the gateway accepts: OpenAI's chat completions, within limits."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


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
    top_p: float | None = Field(None, gt=0, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    stop: Annotated[str, StringConstraints(max_length=256)] | list[Annotated[str, StringConstraints(max_length=256)]] | None = None
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    n: Literal[1] | None = None
    user: Annotated[str, StringConstraints(max_length=256)] | None = None
