"""The secrets file (CONVEYOR_SECRETS_FILE): a JSON object, or KEY=VALUE lines.

KEY=VALUE lines: blank lines and lines starting with ``#`` are ignored, an optional
``export`` prefix is allowed, and a value wrapped in matching single or double quotes loses
them (no escapes, no interpolation). Names are ``[A-Za-z_][A-Za-z0-9_]*``. A file that breaks
these rules is refused with the line that does, so a typo never becomes a silent empty secret.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

MAX_FILE_BYTES = 1024 * 1024
MAX_SECRETS = 1000
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


class SecretsFileError(ValueError):
    """The secrets file cannot be read or does not follow the format."""


def read_secrets_file(path: Path) -> dict[str, str]:
    """Secrets by name from a JSON or KEY=VALUE file; raises SecretsFileError."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SecretsFileError(f"secrets file {path}: larger than {MAX_FILE_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretsFileError(f"secrets file {path}: cannot read it: {exc}") from exc
    secrets = _parse_json(path, text) if text.lstrip().startswith("{") else _parse_lines(path, text)
    if len(secrets) > MAX_SECRETS:
        raise SecretsFileError(f"secrets file {path}: more than {MAX_SECRETS} secrets")
    return secrets


def _parse_json(path: Path, text: str) -> dict[str, str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SecretsFileError(f"secrets file {path}: invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SecretsFileError(f"secrets file {path}: expected a JSON object")
    secrets: dict[str, str] = {}
    for name, value in data.items():
        if not _NAME.fullmatch(name):
            raise SecretsFileError(f"secrets file {path}: invalid secret name {name!r}")
        if not isinstance(value, str):
            raise SecretsFileError(f"secrets file {path}: secret {name!r} must be a string")
        secrets[name] = value
    return secrets


def _parse_lines(path: Path, text: str) -> dict[str, str]:
    secrets: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not _NAME.fullmatch(name):
            raise SecretsFileError(
                f"secrets file {path}: line {number}: expected NAME=VALUE with a name of "
                "letters, digits and underscores"
            )
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        secrets[name] = value
    return secrets
