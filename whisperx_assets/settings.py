"""Settings from the environment, one mechanism for all: pydantic-settings models whose fields are read from
the variables of the same name in upper case (or the alias a field names), checked by the fields' constraints.
Invalid values raise a ValueError naming each field and what it allows."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, get_args

import annotated_types
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

_PARSED = {"int_parsing": "int", "float_parsing": "float", "bool_parsing": "bool", "int_from_float": "int"}


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def allowed_range(metadata: list) -> str:
    """'in 1..20', 'in (0, 1)', '>= 1', ... from a field's constraints."""
    kinds = (annotated_types.Ge, annotated_types.Gt, annotated_types.Le, annotated_types.Lt)
    bounds = {type(m).__name__.lower(): _number(getattr(m, type(m).__name__.lower())) for m in metadata
              if isinstance(m, kinds)}
    if "ge" in bounds and "le" in bounds:
        return f"in {bounds['ge']}..{bounds['le']}"
    if "gt" in bounds and "lt" in bounds:
        return f"in ({bounds['gt']}, {bounds['lt']})"
    symbols = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    return " and ".join(f"{symbols[k]} {v}" for k, v in bounds.items())


class EnvSettings(BaseSettings):
    # Not populate_by_name: it would also read an aliased field from its own name's variable (`language` from
    # the locale's LANGUAGE); keyword arguments by field name are mapped to the alias in __init__ instead.
    model_config = SettingsConfigDict(frozen=True, env_ignore_empty=True, extra="forbid")
    invalid: ClassVar[str] = "invalid settings"  # an error's opening words
    upper_names: ClassVar[bool] = True  # errors name the environment variable (else the field)

    def __init__(self, **values):
        fields = type(self).model_fields
        values = {fields[k].validation_alias if k in fields and isinstance(fields[k].validation_alias, str) else k: v
                  for k, v in values.items()}
        try:
            super().__init__(**values)
        except ValidationError as exc:
            problems = "; ".join(type(self).describe(error) for error in exc.errors())
            raise ValueError(f"{self.invalid}: {problems}") from None

    @classmethod
    def env_name(cls, field: str) -> str:
        alias = cls.model_fields[field].validation_alias
        return alias if isinstance(alias, str) else (cls.model_config.get("env_prefix", "") + field).upper()

    @classmethod
    def describe(cls, error: dict) -> str:
        by_alias = {cls.env_name(name): name for name in cls.model_fields}
        loc = error["loc"][0] if error["loc"] else ""
        field = by_alias.get(loc, loc)
        info = cls.model_fields.get(field)
        label = cls.env_name(field) if cls.upper_names and info else field
        value = error.get("input")
        if error["type"] in ("greater_than", "greater_than_equal", "less_than", "less_than_equal") and info:
            return f"{label} must be {allowed_range(info.metadata)}, got {_number(value)}"
        if error["type"] == "literal_error" and info:
            choices = next((get_args(a) for a in (info.annotation, *get_args(info.annotation)) if get_args(a)
                            and all(isinstance(c, str) for c in get_args(a))), ())
            return f"{label} must be one of {choices}, got {value!r}"
        if error["type"] in _PARSED:  # most likely read from the environment
            return f"{cls.env_name(field) if info else label}={value!r} is not a valid {_PARSED[error['type']]}"
        message = error["msg"].removeprefix("Value error, ")
        return f"{label} {message}" if field else message

    def replace(self, **changes) -> "EnvSettings":
        """A copy with `changes`, checked (environment variables are not read again)."""
        return type(self)(**{**self.model_dump(), **changes})


def _shown(value: Any) -> str:
    if value is None or value == ():
        return "unset"
    if isinstance(value, tuple):
        return "`" + ",".join(_number(v) for v in value) + "`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{str(value).replace(str(Path.home()), '~')}`"


def markdown_table(model: type[EnvSettings]) -> str:
    """The README's table of `model`'s variables, defaults and meanings."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, info in model.model_fields.items():
        default = info.default_factory() if info.default_factory else info.default
        per_run = " *(per run)*" if (info.json_schema_extra or {}).get("per_run") else ""
        rows.append(f"| `{model.env_name(name)}` | {_shown(default)} | {info.description}{per_run} |")
    return "\n".join(rows)
