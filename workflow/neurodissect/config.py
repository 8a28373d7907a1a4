"""Config validation against config/schema.yaml with messages that name the key.

Used by the Snakefile at parse time (keep imports light) and by the CLI.
Defaults declared in the schema are filled in, so a user config only needs
what differs from them.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from .errors import ConfigError


def load_yaml(path: str | Path) -> Any:
    import yaml

    try:
        with open(path) as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def fill_defaults(config: Any, schema: dict[str, Any]) -> Any:
    """Insert every schema ``default`` missing from ``config`` (recursively, in place)."""
    if not isinstance(config, dict):
        return config
    for key, sub in schema.get("properties", {}).items():
        if key not in config and "default" in sub:
            config[key] = copy.deepcopy(sub["default"])
        if key in config:
            fill_defaults(config[key], sub)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key in config:
            if key not in schema.get("properties", {}):
                fill_defaults(config[key], extra)
    return config


def _key_path(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _describe(error, schema_root: dict[str, Any]) -> str:
    where = _key_path(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        extra = error.schema.get("additionalProperties")
        if extra is False and allowed:
            return f"config key '{where}': unknown key(s) {unknown}; allowed: {allowed}"
    if error.validator == "enum":
        return f"config key '{where}': {error.instance!r} is not one of {error.validator_value}"
    if error.validator == "required":
        return f"config key '{where}': {error.message}"
    if error.validator == "type":
        return (
            f"config key '{where}': expected {error.validator_value}, "
            f"got {type(error.instance).__name__} {error.instance!r}"
        )
    desc = error.schema.get("description")
    hint = f" ({desc})" if desc else ""
    return f"config key '{where}': {error.message}{hint}"


def validate(config: Any, schema_path: str | Path) -> dict[str, Any]:
    """Fill defaults and validate; raise ConfigError listing every problem by key path."""
    import jsonschema

    schema = load_yaml(schema_path)
    if config is None:
        config = {}
    config = fill_defaults(copy.deepcopy(config), schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [_describe(e, schema) for e in errors]
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(lines))
    return config


def parse_model(model: str) -> tuple[str, int]:
    """``resnet18-s0`` → (``resnet18``, 0)."""
    arch, _, seed = model.rpartition("-s")
    if not arch or not seed.isdigit():
        raise ConfigError(f"model '{model}': expected '<architecture>-s<seed>', e.g. resnet18-s0")
    return arch, int(seed)
