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


def _resolve(sub: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` ("#/$defs/name"), merging the referring schema's own keys."""
    ref = sub.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return sub
    target: Any = root
    for part in ref[2:].split("/"):
        target = target[part]
    merged = {**_resolve(target, root), **{k: v for k, v in sub.items() if k != "$ref"}}
    return merged


def fill_defaults(config: Any, schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """Insert every schema ``default`` missing from ``config`` (recursively, in place).

    Follows local ``$ref``s and the ``then`` branches of ``allOf`` if/then blocks whose
    ``if`` matches (e.g. per-format dataset options).
    """
    root = schema if root is None else root
    schema = _resolve(schema, root)
    if not isinstance(config, dict):
        return config
    props = _properties(config, schema, root)
    for key, sub in props.items():
        sub = _resolve(sub, root)
        if key not in config and "default" in sub:
            config[key] = copy.deepcopy(sub["default"])
        if key in config:
            fill_defaults(config[key], sub, root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key in config:
            if key not in props:
                fill_defaults(config[key], extra, root)
    return config


def _properties(config: dict[str, Any], schema: dict[str, Any], root: dict[str, Any]) -> dict:
    """The properties ``schema`` gives ``config``: its own plus matching if/then branches."""
    props = dict(schema.get("properties", {}))
    for clause in schema.get("allOf", []):
        cond = clause.get("if", {}).get("properties", {})
        if cond and all(_matches(config.get(k), c) for k, c in cond.items()):
            for key, sub in clause.get("then", {}).get("properties", {}).items():
                props[key] = {**_resolve(props.get(key, {}), root), **_resolve(sub, root)}
    return props


def _coerce_text(text: str, schema: dict[str, Any]) -> Any:
    """A string where the schema wants no string: its YAML value (``'[a, b]'``, ``'true'``,
    ``'null'`` also for optional strings),
    or its float for exponents PyYAML reads as text (``'7e-4'``). Unparseable text stays
    text, so validation names the key."""
    import yaml

    types = schema.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    # Snakemake reads --config values with YAML's BaseLoader: null arrives as text too
    if "null" in types and text.strip() in ("null", "Null", "NULL", "~"):
        return None
    if not types or "string" in types:
        return text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and ({"number", "integer"} & set(types)):
        try:
            value = float(value)
        except ValueError:
            return text
    if isinstance(value, float) and "integer" in types and "number" not in types:
        value = int(value) if value.is_integer() else value
    return value


def coerce_types(config: Any, schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """Values given as strings (Snakemake's ``--config 'sae={l1_coefficient: 7e-4}'`` hands
    nested values over as text) converted to the number / boolean / list / null type the
    schema declares, recursively; everything else unchanged."""
    root = schema if root is None else root
    schema = _resolve(schema, root)
    if isinstance(config, str):
        return _coerce_text(config, schema)
    if isinstance(config, list):
        items = schema.get("items")
        return [coerce_types(v, items, root) for v in config] if isinstance(items, dict) else config
    if not isinstance(config, dict):
        return config
    props = _properties(config, schema, root)
    extra = schema.get("additionalProperties")
    for key, value in config.items():
        sub = props.get(key, extra if isinstance(extra, dict) else None)
        if sub is not None:
            config[key] = coerce_types(value, sub, root)
    return config


def _matches(value: Any, cond: dict[str, Any]) -> bool:
    if "const" in cond:
        return value == cond["const"]
    if "enum" in cond:
        return value in cond["enum"]
    return False


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
    config = fill_defaults(coerce_types(copy.deepcopy(config), schema), schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [_describe(e, schema) for e in errors]
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(lines))
    return sort_keys(config)


def sort_keys(value: Any) -> Any:
    """``value`` with every mapping's keys sorted (recursively).

    Snakemake compares a rule's params by value *including dict order*, so the same
    settings written in another order would otherwise rerun every rule.
    """
    if isinstance(value, dict):
        return {k: sort_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [sort_keys(v) for v in value]
    return value


def settings_from(
    cls,
    *sections: dict[str, Any] | None,
    section: str | None = None,
    choices: dict[str, Any] | None = None,
):
    """An instance of the dataclass ``cls`` from config sections merged left to right.

    The last mapping is the stage's own (config section ``section``, e.g. "annotate"): a
    key in it that ``cls`` has no field for is a ConfigError naming it, never dropped.
    The earlier ones (runtime, a key lent by another section) only fill fields.
    ``choices`` (field → allowed values): a value outside them is a ConfigError naming
    ``section.field``."""
    from dataclasses import fields

    known = {f.name for f in fields(cls)}
    if section is not None and sections:
        unknown = sorted(set(sections[-1] or {}) - known)
        if unknown:
            raise ConfigError(
                f"config section '{section}': unknown key(s) {unknown} for {cls.__name__}; "
                f"known: {sorted(known)}"
            )
    merged: dict[str, Any] = {}
    for values in sections:
        merged.update(values or {})
    params = cls(**{k: v for k, v in merged.items() if k in known})
    for key, allowed in (choices or {}).items():
        value = getattr(params, key)
        if value not in allowed:
            raise ConfigError(f"{section}.{key}: {value!r} is not one of {allowed}")
    return params


def parse_model(model: str) -> tuple[str, int]:
    """``resnet18-s0`` → (``resnet18``, 0)."""
    arch, _, seed = model.rpartition("-s")
    if not arch or not seed.isdigit():
        raise ConfigError(f"model '{model}': expected '<architecture>-s<seed>', e.g. resnet18-s0")
    return arch, int(seed)
