"""An artifact sink on a local folder, for the runner tests: they need no artifact service.

Steps of a running Conveyor store their artifacts through the artifact service
(`conveyor.artifacts.client.ServiceArtifactSink`, with its local or S3 backend).

Layout: ``<root>/<run_id>/<node_id>/<attempt>/<name>``. A file is written
under a temporary name and renamed into place, so a reader never sees half an
artifact and a failed save leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit


class LocalWriter:
    """An artifact file being written; the final name appears only once it is complete."""

    def __init__(self, target: Path, name: str) -> None:
        self.target, self.name = target, name
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{name}.", suffix=".part")
        self._file = os.fdopen(fd, "wb")
        self._digest = hashlib.sha256()
        self._size = 0

    def write(self, data: bytes) -> None:
        """Append bytes."""
        self._file.write(data)
        self._digest.update(data)
        self._size += len(data)

    def close(self) -> dict[str, Any]:
        """Rename into place; the artifact record."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self.target)
        return {
            "name": self.name,
            "uri": self.target.as_uri(),
            "size": self._size,
            "sha256": self._digest.hexdigest(),
        }

    def abort(self) -> None:
        """Drop the partial file."""
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


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

    def open(
        self, run_id: str, node_id: str, attempt: int, name: str, *, kind: str = ""
    ) -> LocalWriter:
        """Start writing an artifact as its bytes arrive (renamed into place on close)."""
        return LocalWriter(self.path_for(run_id, node_id, attempt, name), name)

    def read(self, uri: str) -> BinaryIO:
        """Open an artifact this sink saved, for reading."""
        parts = urlsplit(uri)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise ValueError(f"not a local artifact URI: {uri}")
        path = Path(unquote(parts.path)).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"artifact URI is outside {self.root}: {uri}")
        return path.open("rb")
