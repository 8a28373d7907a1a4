"""Reading helpers the real-dataset adapters share.

Each turns a malformed source file into ONE :class:`InputError` that names the
file, what is missing and what the published layout looks like, instead of a
pandas/json traceback. Row references are ``file:line`` (the header is line 1)
so a user can open the file at the culprit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ...errors import ConfigError, InputError


def check_options(
    fmt: str,
    options: Mapping[str, Any] | None,
    defaults: dict[str, Any],
    list_keys: Iterable[str] = (),
) -> dict:
    """Options of one format with defaults filled in; an unknown key is a ConfigError.

    (The config schema checks the same keys; this guards the CLI's ``--option
    key=value``, whose text values are converted to the default's type: lists
    comma-separated, booleans true/false. ``list_keys`` are lists with a null default.)
    """
    options = dict(options or {})
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ConfigError(
            f"dataset format '{fmt}': unknown option(s) {unknown}; known: {sorted(defaults)}"
        )
    list_keys = set(list_keys)
    out = dict(defaults)
    for key, value in options.items():
        out[key] = _from_text(fmt, key, value, defaults[key], key in list_keys)
    return out


def _from_text(fmt: str, key: str, value: Any, default: Any, is_list: bool) -> Any:
    if not isinstance(value, str):
        return value
    if isinstance(default, bool):
        if value.strip().lower() not in ("true", "false"):
            raise ConfigError(
                f"dataset format '{fmt}': option {key}={value!r}; expected true or false"
            )
        return value.strip().lower() == "true"
    if isinstance(default, list) or is_list:
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(default, dict):
        raise ConfigError(
            f"dataset format '{fmt}': option {key} is a mapping; set it under "
            "datasets.<name>.options in the config file"
        )
    if isinstance(default, int):
        try:
            return int(value)
        except ValueError:
            raise ConfigError(
                f"dataset format '{fmt}': option {key}={value!r}; expected an integer"
            ) from None
    return value


def resolve(root: Path, value: str | Path) -> Path:
    """An option's path: absolute as given, else relative to the dataset root."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else root / p


def first_existing(root: Path, names: Iterable[str], what: str) -> Path:
    """The first of ``names`` (relative to root) that exists, else an InputError listing them."""
    names = list(names)
    for name in names:
        if (root / name).exists():
            return root / name
    raise InputError(f"{root}: {what} not found; expected one of {names} in this folder")


def line_of(path: Path, index: int) -> str:
    """``file:line`` of the ``index``-th data row of a CSV with one header line."""
    return f"{path.name}:{index + 2}"


def read_table(
    path: Path, required: Iterable[str], expected_header: str, what: str = "metadata"
) -> pd.DataFrame:
    """A CSV as strings ('' for empty cells) that must hold the ``required`` columns."""
    if not path.is_file():
        raise InputError(f"{path}: {what} file not found (expected header: {expected_header})")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(
            f"{path}: not a readable CSV ({exc}); expected header: {expected_header}"
        ) from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {missing}; found {list(df.columns)}; "
            f"expected header: {expected_header}"
        )
    return df


def read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc}); expected {what}") from None


def read_id_list(path: Path, what: str) -> list[tuple[int, str]]:
    """(line number, first token) of every non-empty line of a split list."""
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    out = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            token = line.strip().split()[0] if line.strip() else ""
            if token:
                out.append((lineno, token))
    return out


def index_files(root: Path, patterns: Iterable[str]) -> dict[str, str]:
    """File name → path relative to root, over glob ``patterns`` tried in order.

    A name found by an earlier pattern wins (e.g. Kaggle's HAM10000 ships each
    image in an upper- and a lower-case folder: the upper-case copy is used).
    """
    found: dict[str, str] = {}
    for pattern in patterns:
        for p in sorted(root.glob(pattern)):
            if p.is_file():
                found.setdefault(p.name, p.relative_to(root).as_posix())
    return found


def to_float(value: str) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if out == out else None  # NaN is not a number here


RECORD_COLUMNS = ["image_id", "path", "source", "label", "split", "report", "group"]


def records_frame(rows: list[dict], columns: list[str] = RECORD_COLUMNS) -> pd.DataFrame:
    """Records as object columns, so a missing value stays None (not NaN / <NA>)."""
    return pd.DataFrame({c: pd.Series([r.get(c) for r in rows], dtype=object) for c in columns})
