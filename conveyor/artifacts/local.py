"""Artifacts kept in a folder of the local file system, for one-machine setups and tests.

Layout: ``<root>/<run_id>/<node_id>/<attempt>/<name>``. A file is written
under a temporary name and renamed into place, so a reader never sees half an
artifact and a failed save leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit


class LocalArtifactSink:
    """Stores artifacts as files under `root` and returns ``file://`` URIs."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def path_for(self, run_id: str, node_id: str, attempt: int, name: str) -> Path:
        """Where an artifact lives; refuses parts that would leave the root."""
        parts = [run_id, node_id, str(attempt), name]
        for part in parts:
            if not part or part in (".", "..") or "/" in part or "\\" in part or "\0" in part:
                raise ValueError(f"invalid artifact path part: {part!r}")
        return self.root.joinpath(*parts)

    def save(
        self, run_id: str, node_id: str, attempt: int, name: str, data_iter: Iterable[bytes]
    ) -> str:
        """Write the chunks of `data_iter` atomically; return the file's URI."""
        target = self.path_for(run_id, node_id, attempt, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in data_iter:
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return target.as_uri()

    def open(self, uri: str) -> BinaryIO:
        """Open an artifact this sink saved, for reading."""
        parts = urlsplit(uri)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise ValueError(f"not a local artifact URI: {uri}")
        path = Path(unquote(parts.path)).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"artifact URI is outside {self.root}: {uri}")
        return path.open("rb")
