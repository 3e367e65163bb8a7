"""Building blocks for typed settings: strict immutable models and validators whose
messages say what is allowed."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic_core import PydanticCustomError


class Settings(BaseModel):
    """Immutable; an unknown key is an error, not a silently ignored typo."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def between(lo: int, hi: int) -> AfterValidator:
    def check(value: int) -> int:
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return value

    return AfterValidator(check)


def matching(pattern: str, allowed: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"must be {allowed}")
        return value

    return AfterValidator(check)


def ipv4_network(value: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(value, strict=True)
    except ValueError as err:
        raise ValueError(f"must be an IPv4 CIDR range with no host bits set, like 10.0.0.0/20 ({err})") from None


Cidr = Annotated[str, AfterValidator(lambda v: str(ipv4_network(v)))]


def invalid(key: str, message: str) -> PydanticCustomError:
    """A cross-field problem, reported against ``key`` (relative to the model that raises it)."""
    return PydanticCustomError("invalid_setting", "{message}", {"key": key, "message": message})
