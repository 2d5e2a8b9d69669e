"""Problem files: a YAML mapping plus ``KEY=VALUE`` overrides from the command line."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> dict:
    """Read the YAML mapping at ``path`` and apply ``KEY=VALUE`` overrides (values parsed as YAML).

    Dotted keys reach into sections (``model.steps=50``); missing sections are created.
    """
    import yaml

    with open(path) as f:
        config = yaml.safe_load(f) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a YAML mapping, not {type(config).__name__}")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not KEY=VALUE")
        *sections, last = key.split(".")
        node = config
        for s in sections:
            node = node.setdefault(s, {})
        node[last] = yaml.safe_load(value)
    return config
