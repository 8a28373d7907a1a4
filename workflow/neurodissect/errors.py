"""Errors that describe a problem with the user's input, config or files.

Raise :class:`InputError` with one message that names the culprit (file, row,
key) and what was expected. Rule scripts print it as one line and exit 1
instead of a traceback; the CLI does the same.
"""


class NeurodissectError(Exception):
    """Base class for errors whose message is meant for the user, not a developer."""


class InputError(NeurodissectError):
    """Bad input data or artifact: missing/corrupt file, wrong columns, mismatched ids."""


class ConfigError(NeurodissectError):
    """A config value the schema or a stage rejects."""


def collect(culprits: list[str], headline: str, limit: int = 50) -> str:
    """One message listing every culprit (trimmed after ``limit`` lines with a count)."""
    shown = culprits[:limit]
    more = len(culprits) - len(shown)
    lines = [f"{headline} ({len(culprits)} problem{'s' if len(culprits) != 1 else ''}):"]
    lines += [f"  - {c}" for c in shown]
    if more:
        lines.append(f"  ... and {more} more")
    return "\n".join(lines)
