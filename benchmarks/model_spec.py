"""The benchmarks' way to name a zoo network with options: 'dabnet:activation=relu:width1=96'."""
from __future__ import annotations

import yaml


def parse_model(spec: str) -> tuple[str, dict]:
    """'dabnet' or 'dabnet:activation=relu:width1=96' -> (zoo name, options; values read as YAML)."""
    name, *pairs = spec.split(":")
    options = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        options[key] = yaml.safe_load(value)
    return name, options
