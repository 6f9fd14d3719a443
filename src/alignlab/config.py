"""Typed command configs: dataclass fields carry their help, the CLI parses straight into them."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any


def opt(default: Any = dataclasses.MISSING, help: str = "", *, factory=None, flag: str | None = None,
        choices: list[str] | None = None, short: str | None = None, positional: bool = False):
    """A config field whose one-line help is shown by ``--help`` and recorded with the run."""
    meta = {"help": help, "flag": flag, "choices": choices, "short": short, "positional": positional}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(element type, is_list) for ``str``, ``int | None``, ``list[str]`` and friends."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0])
    if origin is list:
        return typing.get_args(tp)[0], True
    return tp, False


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--kebab-case`` option per field of the dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        base, is_list = _base_type(hints[f.name])
        default = None if f.default is dataclasses.MISSING else f.default
        kwargs: dict[str, Any] = {"help": meta.get("help", ""), "dest": f.name}
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction if default else "store_true"
        else:
            kwargs["type"] = base
            kwargs["metavar"] = f.name.upper()
            if meta.get("choices"):
                kwargs["choices"] = meta["choices"]
            if is_list:
                kwargs["action"] = "append"
        if default is not None and base is not bool and not is_list:
            kwargs["help"] += f" (default: {default})"
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if meta.get("positional"):
            kwargs.pop("dest")
            parser.add_argument(f.name, **kwargs)
            continue
        names = [meta.get("flag") or "--" + f.name.replace("_", "-")]
        if meta.get("short"):
            names.insert(0, meta["short"])
        parser.add_argument(*names, required=required, default=argparse.SUPPRESS, **kwargs)


def config_from_namespace(cls: type, ns: argparse.Namespace):
    """Build ``cls`` from parsed arguments; absent options keep the dataclass defaults."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in vars(ns).items() if k in names})


def config_to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)
