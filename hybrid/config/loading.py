"""Reading environments/<env>.toml into an Environment, and describing what is wrong with it:
one line per problem, naming the file, the key and what is allowed."""

from __future__ import annotations

import contextlib
import tomllib
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from hybrid.config.environment import Environment
from hybrid.config.errors import ConfigError, did_you_mean, must
from hybrid.config.regions import gpu_region_problem


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
    gets, the service contract's included; raise ConfigError listing every problem, field and
    cross-field alike, in one pass."""
    try:
        env = Environment.model_validate(raw)
    except ValidationError as err:
        problems = list(describe(err, Environment))
        # Pydantic runs a model's cross-field checks only once all its fields are valid: run
        # them on the parts that are, so that one run names every mistake.
        partial, hidden = _partial(Environment, raw, ())
        problems += [line for line in hidden if line not in problems]
        problems += [
            line
            for line in [*_region_problems(partial), *_contract_problems(partial, partial=True)]
            if line not in problems
        ]
        raise ConfigError(path, problems) from None
    problems = [*_region_problems(env), *_contract_problems(env)]
    # The edge's rules read the gateway's settings: checked once those are valid.
    problems = problems or _edge_problems(env)
    if problems:
        raise ConfigError(path, problems)
    return env


def _edge_problems(env: Environment) -> list[str]:
    """The edge's Cloud Armor rules as the edge layer would make them (hybrid/armor.py)."""
    if not env.edge.enabled:
        return []
    from hybrid.armor import ArmorRuleError, armor_rules  # builds on this package
    from hybrid.service_contract import gateway_requests_per_user_minute

    try:
        armor_rules(env.edge.armor, gateway_requests_per_user_minute(env))
    except ArmorRuleError as err:
        return [str(err)]
    return []


def _contract_problems(env: Any, *, partial: bool = False) -> list[str]:
    """Each service's settings as the stacks would render them (hybrid/service_contract.py); on a
    ``partial`` environment, only where the contract reads no invalid field."""
    from hybrid.service_contract import ContractError, Wiring, service_settings  # builds on this package

    try:
        service_settings(env, Wiring.placeholder(env))
    except ContractError as err:
        return err.problems
    except (AttributeError, TypeError, ValueError):  # a field the contract reads is invalid (absent)
        if not partial:
            raise
    return []


def _partial(model: type[BaseModel], raw: Any, loc: tuple[str, ...]) -> tuple[Any, list[str]]:
    """``raw`` as ``model`` with only its valid fields set (model_construct), and the problems its
    cross-field checks find in them; a check that needs an invalid field is skipped."""
    try:
        return model.model_validate(raw), []
    except ValidationError:
        if not isinstance(raw, Mapping):
            return None, []
    fields: dict[str, Any] = {}
    problems: list[str] = []
    for name, info in model.model_fields.items():
        if name not in raw:
            continue
        nested = _settings_model(info.annotation)
        if nested is not None and isinstance(raw[name], Mapping):
            fields[name], found = _partial(nested, raw[name], (*loc, name))
            problems += found
            continue
        field_type: Any = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
        with contextlib.suppress(ValidationError):  # an invalid field is left out, as if not given
            fields[name] = TypeAdapter(field_type).validate_python(raw[name])
    partial = model.model_construct(**fields)
    for decorator in model.__pydantic_decorators__.model_validators.values():
        if decorator.info.mode != "after":
            continue
        try:
            decorator.func(partial)
        except PydanticCustomError as err:
            error = ValidationError.from_exception_data(
                model.__name__, [InitErrorDetails(type=err, loc=loc, input=raw)]
            )
            problems += describe(error, Environment)
        except (AttributeError, TypeError):  # the check reads a field that is not valid
            pass
    return partial, problems


def _settings_model(annotation: Any) -> type[BaseModel] | None:
    """The settings model of a table, also when it is optional (``X | None``)."""
    candidates = (annotation, *typing.get_args(annotation))
    nested = [t for t in candidates if isinstance(t, type) and issubclass(t, BaseModel)]
    return nested[0] if nested else None


def _region_problems(env: Any) -> Iterator[str]:
    """The model servers' GPU where the environment's region has it (hybrid/config/regions.py):
    the placed one's, and a Cloud Run spill target's (spill_to = "cloud_run")."""
    region, inference = getattr(env, "region", None), getattr(env, "inference", None)
    placement = getattr(inference, "placement", None)
    placed = (placement,) if placement else ()
    spill = ("cloud_run",) if getattr(inference, "spill_to", None) == "cloud_run" and placement != "cloud_run" else ()
    for where in (*placed, *spill):
        gpu_type = getattr(getattr(inference, where, None), "gpu_type", None)
        if region and gpu_type and (problem := gpu_region_problem(where, gpu_type, region)):
            yield f"inference.{where}.gpu_type = {gpu_type!r}: {problem}"


def describe(err: ValidationError, root: type[BaseModel]) -> Iterator[str]:
    """One line per problem of a settings file validated as ``root``: the key, the value, what it must be."""
    for problem in err.errors():
        inner = (problem.get("ctx") or {}).get("key")
        loc = tuple(str(part) for part in problem["loc"]) + (tuple(inner.split(".")) if inner else ())
        key = ".".join(loc)
        if loc[-1:] == ("[key]",):  # a bad key of a table such as labels
            yield f"{'.'.join(loc[:-2])}: key {loc[-2]!r}: {must(problem['msg'])}"
        elif problem["type"] == "extra_forbidden":
            allowed = _allowed_keys(root, loc[:-1])
            yield f"{key}: unknown key{did_you_mean(loc[-1], allowed)}: must be one of {', '.join(allowed)}"
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
    model: type[BaseModel] | None = root
    for part in loc:
        field = model.model_fields.get(part) if model else None
        model = _settings_model(field.annotation) if field else None
    if model is None:
        return []
    # A table whose keys are more than its fields (CloudRunServices) says which.
    allowed = getattr(model, "allowed_keys", None)
    return list(allowed()) if allowed else list(model.model_fields)


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
