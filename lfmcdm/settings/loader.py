"""The YAML loader of ``params.yaml``: YAML 1.2 core schema, duplicate keys refused, key lines recorded.

Why not ``yaml.safe_load``: PyYAML implements YAML 1.1, where ``no``/``yes``/``on``/``off`` are
booleans and ``2026-11-30`` a date, while DVC rewrites params.yaml with ruamel.yaml in YAML 1.2
(``dvc exp run -S`` drops the quotes of ``"no"`` and writes ``null`` as an empty value). With 1.1
rules the rewritten file would load differently from the original (``mixed_precision: no`` would
become ``False``). The core schema's rules, which this loader follows:

- booleans: only ``true``/``false`` (also ``True``/``TRUE``/``False``/``FALSE``);
- null: ``~``, ``null`` (any of 3 casings) or nothing;
- ints: ``[-+]?[0-9]+`` (decimal even with leading zeros), ``0o17``, ``0x1F``;
- floats: ``1.5``, ``1e-4``, ``.5``, ``.inf``, ``.nan``; everything else is a string.

A key given twice in one mapping is an error naming both lines (PyYAML silently keeps the last).
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml


class ConfigError(ValueError):
    """Raised for an unreadable, unknown or out-of-range setting; the message names file, line and key."""


class CoreLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars and duplicate-key detection."""

    source = "<yaml>"

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:
                raise ConfigError(f"{self.source}:{line}: unhashable mapping key") from None
            if first is not None:
                raise ConfigError(f"{self.source}:{line}: key {key!r} is given twice in one mapping "
                                  f"(first at line {first}); remove one")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


CoreLoader.yaml_implicit_resolvers = {}  # drop YAML 1.1's resolvers (yes/no, dates, sexagesimal, '<<')
for _tag, _pattern, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    ("float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
     "-+0123456789."),
):
    CoreLoader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), list(_first))


def _construct_int(loader: CoreLoader, node: yaml.ScalarNode) -> int:
    value = loader.construct_scalar(node)
    if value.startswith("0o"):
        return int(value[2:], 8)
    if value.startswith("0x"):
        return int(value[2:], 16)
    return int(value, 10)


def _construct_float(loader: CoreLoader, node: yaml.ScalarNode) -> float:
    value = loader.construct_scalar(node).lower()
    if value.endswith(".inf"):
        return -math.inf if value.startswith("-") else math.inf
    return math.nan if value == ".nan" else float(value)


def _construct_bool(loader: CoreLoader, node: yaml.ScalarNode) -> bool:
    return loader.construct_scalar(node).lower() == "true"


CoreLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
CoreLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)
CoreLoader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)


def load_yaml(text: str, source: str) -> Any:
    """Parse ``text`` (from ``source``, named in errors) with the core schema; duplicate keys are errors."""
    loader = CoreLoader(text)
    loader.source = source
    try:
        return loader.get_single_data()
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML: {err}") from None
    finally:
        loader.dispose()


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map every mapping key path (and sequence index) in a YAML document to its 1-based line number."""
    lines: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key_path = path + (str(key_node.value),)
                lines.setdefault(key_path, key_node.start_mark.line + 1)
                walk(value_node, key_path)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[path + (str(i),)] = item.start_mark.line + 1
                walk(item, path + (str(i),))

    root = yaml.compose(text, Loader=CoreLoader)
    if root is not None:
        walk(root, ())
    return lines
