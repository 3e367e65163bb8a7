"""Reading environments/<env>.toml into an Environment, and describing what is wrong with it:
one line per problem, naming the file, the key and what is allowed."""

from __future__ import annotations

import tomllib
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from hybrid.config.environment import Environment
from hybrid.config.errors import ConfigError, must


def read_toml(path: Path) -> dict[str, Any]:
    """A settings file's data; ConfigError if it cannot be read or is not TOML."""
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(path, ["file not found"]) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as err:
        raise ConfigError(path, [f"cannot be read: {err}"]) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(path, [f"must be valid TOML: {err}"]) from None


def load_environment(path: Path) -> Environment:
    """Read and validate one environment file; raise ConfigError listing every problem."""
    return parse_environment(read_toml(path), path)


def parse_environment(raw: Mapping[str, Any], path: Path | None = None) -> Environment:
    """Validate settings as parsed from a file (or built as the same data): every check a file
    gets, the service contract's included; raise ConfigError listing every problem."""
    try:
        env = Environment.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(path, list(describe(err, Environment))) from None
    from hybrid.service_contract import ContractError, Wiring, service_settings  # builds on this package

    try:
        service_settings(env, Wiring.placeholder(env))
    except ContractError as err:
        raise ConfigError(path, err.problems) from None
    return env


def describe(err: ValidationError, root: type[BaseModel]) -> Iterator[str]:
    """One line per problem of a settings file validated as ``root``: the key, the value, what it must be."""
    for problem in err.errors():
        inner = (problem.get("ctx") or {}).get("key")
        loc = tuple(str(part) for part in problem["loc"]) + (tuple(inner.split(".")) if inner else ())
        key = ".".join(loc)
        if loc[-1:] == ("[key]",):  # a bad key of a table such as labels
            yield f"{'.'.join(loc[:-2])}: key {loc[-2]!r}: {must(problem['msg'])}"
        elif problem["type"] == "extra_forbidden":
            yield f"{key}: unknown key: must be one of {', '.join(_allowed_keys(root, loc[:-1]))}"
        elif problem["type"] == "missing":
            yield f"{key}: must be set: the key is required"
        else:
            value = _lookup(problem["input"], inner.split(".")) if inner else problem["input"]
            shown = "" if value is None else f" = {value!r}"
            yield f"{key}{shown}: {must(problem['msg'])}"


def _lookup(data: Any, path: list[str]) -> Any:
    for part in path:
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _allowed_keys(root: type[BaseModel], loc: tuple[str, ...]) -> list[str]:
    model = root
    for part in loc:
        field = model.model_fields.get(part)
        # The settings model of this table, also when it is optional (``X | None``).
        candidates = (field.annotation, *typing.get_args(field.annotation)) if field else ()
        nested = [t for t in candidates if isinstance(t, type) and issubclass(t, BaseModel)]
        if not nested:
            return []
        model = nested[0]
    # A table whose keys are more than its fields (CloudRunServices) says which.
    allowed = getattr(model, "allowed_keys", None)
    return allowed() if allowed else list(model.model_fields)


def load_environments(paths: list[Path]) -> list[Environment]:
    """Load every file; report all broken files together, and clashing environment names."""
    loaded, problems = [], []
    for path in paths:
        try:
            loaded.append((path, load_environment(path)))
        except ConfigError as err:
            problems.append(err)
    if problems:
        raise ConfigError.combine(problems)
    seen: dict[str, Path] = {}
    for path, env in loaded:
        if env.name in seen:
            raise ConfigError(path, [f"name = {env.name!r}: must be unique; {seen[env.name]} already uses it"])
        seen[env.name] = path
    return [env for _, env in loaded]
