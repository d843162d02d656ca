"""Every config key as a Markdown table, from the pydantic models themselves.

The README carries this table; a test compares the two, so a key added, renamed or given a
new default or bound shows there. ``python -m harbourwatch.config_reference`` prints it;
``… --readme README.md`` rewrites the README's copy in place.
"""

from __future__ import annotations

import json
import sys
import types
import typing
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from harbourwatch.config import Config

_BOUNDS = ((annotated_types.Ge, "≥"), (annotated_types.Gt, ">"), (annotated_types.Le, "≤"),
           (annotated_types.Lt, "<"))


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The config models a field holds (itself, or in a list or an optional)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in args)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(annotation)
        limits = ", ".join(b for info in extra if isinstance(info, FieldInfo)
                           for b in [_bounds(info)] if b)
        return f"{_type_name(base)} ({limits})" if limits else _type_name(base)
    if origin is list:
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of {_type_name(args[0])} to {_type_name(args[1])}" if args else "mapping"
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return "mapping"
        if issubclass(annotation, SecretStr):
            return "secret"
        if issubclass(annotation, Path):
            return "path"
        if issubclass(annotation, Enum):
            return " \\| ".join(f"`{m.value}`" for m in annotation)
        return annotation.__name__
    return str(annotation)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.default
    if value is PydanticUndefined and field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    if isinstance(value, BaseModel):
        return ""
    if isinstance(value, Path):
        value = str(value)
    return f"`{json.dumps(value, ensure_ascii=False, default=str)}`"


def _bounds(field: FieldInfo) -> str:
    parts = [f"{sign} {getattr(item, type(item).__name__.lower())}"
             for item in field.metadata for kind, sign in _BOUNDS if isinstance(item, kind)]
    parts += [f"length ≥ {item.min_length}" for item in field.metadata
              if isinstance(item, annotated_types.MinLen)]
    parts += [f"length ≤ {item.max_length}" for item in field.metadata
              if isinstance(item, annotated_types.MaxLen)]
    parts += [f"matches `{pattern}`" for item in field.metadata
              if (pattern := getattr(item, "pattern", None)) is not None]
    return ", ".join(parts).replace("|", "\\|")


def rows(model: type[BaseModel] = Config, prefix: str = "") -> Iterator[str]:
    """One table row per key, depth first in declaration order."""
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        nested = _models(field.annotation)
        description = (field.description or "").replace("|", "\\|")
        yield (f"| `{key}` | {_type_name(field.annotation)} | {_default(field)} | "
               f"{_bounds(field)} | {description} |")
        for sub in nested:
            marker = "[]." if typing.get_origin(field.annotation) is list else "."
            yield from rows(sub, f"{key}{marker}")


HEADER = "| key | type | default | bounds | meaning |"


def reference() -> str:
    """The whole table, header included."""
    return "\n".join([HEADER, "|---|---|---|---|---|", *rows()]) + "\n"


def rewrite(readme: Path) -> None:
    """Replace the table in ``readme`` (from its header row to the blank line after it)."""
    text = readme.read_text(encoding="utf-8")
    start = text.index(HEADER)
    end = text.index("\n\n", start) + 1
    readme.write_text(text[:start] + reference() + text[end:], encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--readme"] and len(sys.argv) == 3:
        rewrite(Path(sys.argv[2]))
    else:
        print(reference(), end="")
