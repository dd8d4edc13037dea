"""The secrets file: JSON or KEY=VALUE lines, environment variables winning."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.executor.secrets import SecretsFileError, read_secrets_file
from conveyor.executor.worker import load_secrets


def test_key_value_lines(tmp_path: Path) -> None:
    path = tmp_path / "s.env"
    path.write_text("# comment\n\nA=1\nexport B = 'two words'\nC=\"x=y\"\nD=\n")
    assert read_secrets_file(path) == {"A": "1", "B": "two words", "C": "x=y", "D": ""}


def test_json_object(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"TOKEN": "abc", "other_1": "d"}')
    assert read_secrets_file(path) == {"TOKEN": "abc", "other_1": "d"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("A=1\nnot a pair\n", "line 2"),
        ("1BAD=x\n", "line 1"),
        ('{"A": 1}', "must be a string"),
        ('{"A-B": "x"}', "invalid secret name"),
        ("[1]", "line 1"),
        ('{"A": ', "invalid JSON"),
    ],
)
def test_bad_files_are_refused(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "s"
    path.write_text(text)
    with pytest.raises(SecretsFileError, match=problem):
        read_secrets_file(path)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SecretsFileError, match="cannot read"):
        read_secrets_file(tmp_path / "absent")


def test_environment_wins_over_file(tmp_path: Path) -> None:
    path = tmp_path / "s.env"
    path.write_text("A=file\nB=file\n")
    env = {"CONVEYOR_SECRET_A": "env", "PATH": "/bin"}
    assert load_secrets(env, secrets_file=path) == {"A": "env", "B": "file"}
