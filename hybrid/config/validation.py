"""Building blocks for typed settings: strict immutable models and validators whose
messages say what is allowed."""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Self, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

F = TypeVar("F", bound=Callable[..., Any])


class Settings(BaseModel):
    """Immutable; an unknown key is an error, not a silently ignored typo."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def allows(text: str) -> Callable[[F], F]:
    """Name what a validator allows, in words, for the configuration reference (docs/configuration.md)."""

    def name(check: F) -> F:
        check.allowed = text  # type: ignore[attr-defined]
        return check

    return name


def between(lo: int, hi: int) -> AfterValidator:
    @allows(f"{lo} to {hi}")
    def check(value: int) -> int:
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return value

    return AfterValidator(check)


def matching(pattern: str, allowed: str) -> AfterValidator:
    compiled = re.compile(pattern)

    @allows(allowed)
    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"must be {allowed}")
        return value

    return AfterValidator(check)


@allows("an IPv4 CIDR range, like 10.0.0.0/20")
def _ipv4_network(value: object) -> object:
    if isinstance(value, ipaddress.IPv4Network):
        return value
    why = ""
    if isinstance(value, str):
        try:
            return ipaddress.IPv4Network(value, strict=True)
        except ValueError as err:
            why = f" ({err})"
    raise ValueError(f"must be an IPv4 CIDR range with no host bits set, like 10.0.0.0/20{why}")


@allows("an IPv4 address")
def _ipv4_address(value: object) -> object:
    if isinstance(value, ipaddress.IPv4Address):
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return ipaddress.IPv4Address(value)
    raise ValueError("must be an IPv4 address")


# Parsed once, here, with a message that says what is allowed; used as what they are everywhere.
Cidr = Annotated[ipaddress.IPv4Network, BeforeValidator(_ipv4_network)]
IPv4 = Annotated[ipaddress.IPv4Address, BeforeValidator(_ipv4_address)]


def invalid(key: str, message: str) -> PydanticCustomError:
    """A cross-field problem, reported against ``key`` (relative to the model that raises it)."""
    return PydanticCustomError("invalid_setting", "{message}", {"key": key, "message": message})


class Bounded(Settings):
    """Settings with a lower and an upper bound (``bounds``, their field names), the lower at most the upper."""

    bounds: ClassVar[tuple[str, str]]

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        low, high = self.bounds
        if getattr(self, low) > getattr(self, high):
            raise invalid(low, f"must not exceed {high} ({getattr(self, high)})")
        return self


# cloud.google.com/storage/docs/buckets#naming (names without dots).
BucketName = Annotated[
    str,
    matching(r"[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]", "a GCS bucket name: 3-63 lowercase letters, digits, '-' or '_'"),
]
