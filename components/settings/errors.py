"""Config errors: one sentence per problem that names the key and the fix."""

from __future__ import annotations

import difflib
import json
from typing import Any

from pydantic import (
    BaseModel,
    SecretStr,
)

from components.settings.models import RawSettings
from wire import PROJECT


class SettingsError(Exception):
    """One or more stack config problems; ``str()`` is one sentence per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def _key(loc: tuple[Any, ...]) -> str:
    return f"{PROJECT}:" + ".".join(str(part) if not isinstance(part, int) else f"[{part}]" for part in loc).replace(
        ".[", "["
    )


def _show(value: Any) -> str:
    if isinstance(value, SecretStr):
        return "[secret]"
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    model: Any = RawSettings
    for part in loc[:-1]:
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return []
    return list(model.model_fields)


def _sentence(error: Any) -> str:
    loc, kind, value = tuple(error["loc"]), error["type"], error.get("input")
    key = _key(loc)
    if kind == "missing":
        return f"{key} is required; set it with `pulumi config set {'.'.join(map(str, loc))} VALUE`"
    if kind == "extra_forbidden":
        known = _known_keys(loc)
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"did you mean {close[0]}?" if close else f"known keys: {', '.join(known)}"
        return f"{key} is not a known setting; {hint}"
    shown = f"{key} = {_show(value)}"
    if kind in {"int_parsing", "int_type", "int_from_float"}:
        return f"{shown} is not a whole number; write digits only"
    if kind in {"float_parsing", "float_type"}:
        return f"{shown} is not a number; write it like 0.5 or 2"
    if kind in {"bool_parsing", "bool_type"}:
        return f"{shown} is not true or false"
    if kind in {"enum", "literal_error"}:
        return f"{shown} must be one of {error['ctx'].get('expected', '')}"
    if kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
        bound = {k: v for k, v in error.get("ctx", {}).items()}
        return f"{shown} is out of range ({', '.join(f'{k} {v}' for k, v in bound.items())})"
    if kind == "string_pattern_mismatch":
        return f"{shown} does not match the expected form {error['ctx']['pattern']}"
    if kind in {"model_type", "dict_type", "model_attributes_type"}:
        return f"{shown} must be an object; set it with `pulumi config set --path {'.'.join(map(str, loc))}.KEY VALUE`"
    if kind == "list_type":
        return f"{shown} must be a list; set items with `pulumi config set --path '{'.'.join(map(str, loc))}[0]' VALUE`"
    if kind == "string_type":
        return f"{shown} must be a string"
    return f"{shown} {error['msg']}"
