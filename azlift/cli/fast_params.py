"""Command-line values converted without pydantic when they are plainly valid.

typer 0.29 converts every non-flag parameter through a pydantic TypeAdapter; importing
pydantic and building the adapters is about half of a quick command's start-up (`azlift
vhd check` spends more on it than on reading the image). The values azlift's commands take
are strings, flags, paths, bounded numbers and choices: those are converted here, with typer's
own path and choice checks. Anything else, and any value that is not plainly valid, goes
to typer's converter unchanged, so its error messages stay exactly typer's.
"""
from __future__ import annotations

import re
import types
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from typer import core
from typer._coercion import RuntimeParam
from typer._param_types import coerce_cli_choice, coerce_cli_path

INTEGER = re.compile(r"[+-]?\d+\Z")
DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z")
_typer_runtime_param = core._TyperParameter.get_runtime_param


def _plain(annotation: Any) -> Any:
    """``X`` for ``X | None`` / ``Optional[X]``, else the annotation itself."""
    if get_origin(annotation) in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


@dataclass(frozen=True)
class PlainRuntimeParam(RuntimeParam):
    """Converts the plainly valid values of one parameter; hands the rest to typer's."""

    kind: str  # "str", "bool", "path", "int", "float", "choice"
    fallback: Any  # () -> typer's RuntimeParam, built (with pydantic) only when needed

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        converted = self._convert(value, param, ctx)
        if converted is _UNSURE:
            return self.fallback()._coerce_value(value, param=param, ctx=ctx)
        return converted

    def _convert(self, value: Any, param: Any, ctx: Any) -> Any:
        info, annotation = self.parameter_info, _plain(self.annotation)
        if self.kind == "str":
            return value if isinstance(value, str) else _UNSURE
        if self.kind == "bool":
            return value if isinstance(value, bool) else _UNSURE
        if self.kind == "path":
            if not isinstance(value, (str, Path)):
                return _UNSURE
            path_type = info.path_type or annotation
            value = value if isinstance(value, path_type) else path_type(value)
            return coerce_cli_path(value, info, path_type=path_type, param=param, ctx=ctx)
        if self.kind == "choice":
            choices = list(annotation) if isinstance(annotation, type) else get_args(annotation)
            try:
                return coerce_cli_choice(value, choices=choices,
                                         case_sensitive=info.case_sensitive, ctx=ctx)
            except ValueError:
                return _UNSURE
        number = _number(value, int if self.kind == "int" else float)
        if number is _UNSURE or (info.min is not None and number < info.min) or (
                info.max is not None and number > info.max):
            return _UNSURE
        return number


_UNSURE = object()


def _number(value: Any, kind: type) -> Any:
    if isinstance(value, kind) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and (INTEGER if kind is int else DECIMAL).match(value.strip()):
        return kind(value.strip())
    return _UNSURE


def plain_kind(annotation: Any, info: Any) -> str | None:
    """Which plain conversion fits a parameter, or None (typer converts it)."""
    if info.parser is not None or getattr(info, "click_type", None) is not None:
        return None
    annotation = _plain(annotation)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "choice"
    if get_origin(annotation) is Literal:
        return "choice"
    if annotation is bool:
        return "bool"
    if annotation is str and not (info.allow_dash or info.path_type or info.resolve_path):
        return "str"
    if isinstance(annotation, type) and issubclass(annotation, Path) and (
            info.path_type is None or issubclass(info.path_type, Path)):
        return "path"
    if annotation in (int, float) and not info.clamp:
        return annotation.__name__
    return None


def _runtime_param(self: Any) -> RuntimeParam:
    if self._runtime_param is None:
        descriptor = self.type_descriptor
        kind = None if descriptor.file_annotation is not None else plain_kind(
            descriptor.annotation, descriptor.parameter_info)
        if kind is None:
            return _typer_runtime_param(self)
        built: list[RuntimeParam] = []

        def fallback() -> RuntimeParam:
            if not built:
                from typer._coercion import build_runtime_param
                built.append(build_runtime_param(descriptor))
            return built[0]

        self._runtime_param = PlainRuntimeParam(
            parameter_info=descriptor.parameter_info, annotation=descriptor.annotation,
            kind=kind, fallback=fallback)
    return self._runtime_param


def install() -> None:
    """Route typer's parameter conversion through ``PlainRuntimeParam`` (idempotent)."""
    core._TyperParameter.get_runtime_param = _runtime_param  # type: ignore[method-assign]
