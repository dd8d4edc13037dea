"""Object stores behind the artifact service: a local folder and S3/MinIO (via `minio`).

Both stream in both directions: `put` consumes an iterator of chunks and never holds more
than one chunk (file) or one multipart part (S3) in memory; `read` yields chunks of a byte
range. Keys are made by the service (`domain.object_key`); a backend still refuses a key
that could leave its folder or bucket prefix.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast
from urllib.parse import parse_qs, unquote, urlsplit

from conveyor.artifacts.domain import check_key
from conveyor.kernel.settings import Settings

READ_CHUNK = 1024 * 1024


class ObjectStore(Protocol):
    """Where the artifact bytes live."""

    name: str

    def put(self, key: str, chunks: Iterable[bytes], *, content_type: str) -> None:
        """Store the chunks as the object `key` (atomically: all or nothing)."""
        ...

    def read(self, key: str, offset: int, length: int) -> Generator[bytes, None, None]:
        """Yield `length` bytes of the object from `offset`, in chunks."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; a missing object is not an error."""
        ...

    def presign(self, key: str, ttl: timedelta) -> str:
        """A URL that downloads the object without credentials, or '' if unsupported."""
        ...


class FileStore:
    """Objects as files under one folder; written to a temporary name, then renamed."""

    name = "file"

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def path(self, key: str) -> Path:
        """The file of a key; refuses anything that would resolve outside the root."""
        check_key(key)
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"object key leaves the artifact folder: {key!r}")
        return path

    def put(self, key: str, chunks: Iterable[bytes], *, content_type: str) -> None:
        """Write atomically (temp file + fsync + rename)."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def read(self, key: str, offset: int, length: int) -> Generator[bytes, None, None]:
        """Read the range in chunks of at most 1 MiB."""
        with self.path(key).open("rb") as f:
            f.seek(offset)
            left = length
            while left > 0:
                block = f.read(min(READ_CHUNK, left))
                if not block:
                    return
                left -= len(block)
                yield block

    def delete(self, key: str) -> None:
        """Remove the file and the folders it leaves empty (up to the root)."""
        path = self.path(key)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        parent = path.parent
        while parent != self.root and parent.is_relative_to(self.root):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def presign(self, key: str, ttl: timedelta) -> str:
        """Local files have no presigned URLs."""
        return ""


class _ChunkReader:
    """A file-like `read(n)` over an iterator of chunks, for minio's multipart upload.

    minio asks for a whole part per read; the part is joined once from the chunks (no
    growing buffer), so a part costs its size once here.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._rest = b""

    def read(self, size: int = -1) -> bytes:
        pieces = [self._rest] if self._rest else []
        have = len(self._rest)
        self._rest = b""
        while size < 0 or have < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            pieces.append(chunk)
            have += len(chunk)
        if size >= 0 and have > size:
            last = pieces[-1]
            keep = len(last) - (have - size)
            pieces[-1], self._rest = last[:keep], last[keep:]
        return b"".join(pieces)


@dataclass(frozen=True)
class S3Location:
    """Where an `s3://bucket?endpoint=…` URL points."""

    bucket: str
    endpoint: str
    secure: bool
    prefix: str


def parse_s3_url(url: str) -> S3Location:
    """`s3://bucket[/prefix]?endpoint=http://host:port`; no endpoint means AWS S3 (HTTPS)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"not an s3://bucket URL: {url!r}")
    query = parse_qs(parts.query)
    endpoint = (query.get("endpoint") or ["https://s3.amazonaws.com"])[0]
    ep = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    if ep.scheme not in ("http", "https") or not ep.netloc:
        raise ValueError(f"endpoint must be http(s)://host[:port], got {endpoint!r}")
    prefix = parts.path.strip("/")
    return S3Location(
        bucket=parts.netloc, endpoint=ep.netloc, secure=ep.scheme == "https", prefix=prefix
    )


class S3Store:
    """Objects in one S3/MinIO bucket through the `minio` client (bucket made if missing)."""

    name = "s3"

    def __init__(
        self,
        location: S3Location,
        *,
        access_key: str,
        secret_key: str,
        region: str,
        part_size: int,
    ) -> None:
        from minio import Minio

        self.location = location
        self.part_size = part_size
        self.client = Minio(
            location.endpoint,
            access_key=access_key or None,
            secret_key=secret_key or None,
            secure=location.secure,
            region=region or None,
        )
        if not self.client.bucket_exists(location.bucket):
            with contextlib.suppress(Exception):  # a concurrent creator may win
                self.client.make_bucket(location.bucket)
            if not self.client.bucket_exists(location.bucket):
                raise OSError(f"could not create bucket {location.bucket!r}")

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.location.prefix}/{key}" if self.location.prefix else key

    def put(self, key: str, chunks: Iterable[bytes], *, content_type: str) -> None:
        """Upload with unknown length: minio sends multipart parts of `part_size`."""
        self.client.put_object(
            self.location.bucket,
            self._key(key),
            cast(BinaryIO, _ChunkReader(chunks)),
            length=-1,
            part_size=self.part_size,
            # One part in flight: minio's parallel uploads queue parts without a bound, so
            # a fast producer would hold many parts in memory at once.
            num_parallel_uploads=1,
            content_type=content_type,
        )

    def read(self, key: str, offset: int, length: int) -> Generator[bytes, None, None]:
        """A ranged GET, streamed."""
        if length <= 0:
            return
        response: Any = self.client.get_object(
            self.location.bucket, self._key(key), offset=offset, length=length
        )
        try:
            yield from response.stream(READ_CHUNK)
        finally:
            response.close()
            response.release_conn()

    def delete(self, key: str) -> None:
        """S3 deletes are idempotent."""
        self.client.remove_object(self.location.bucket, self._key(key))

    def presign(self, key: str, ttl: timedelta) -> str:
        """A presigned GET URL valid for `ttl`."""
        return str(self.client.presigned_get_object(self.location.bucket, self._key(key), ttl))


def open_store(settings: Settings) -> ObjectStore:
    """The backend `CONVEYOR_ARTIFACTS_URL` names (default: a folder in the data dir)."""
    url = settings.artifacts_url
    if not url:
        return FileStore(settings.resolved_artifact_dir())
    if url.startswith("file://"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file URL must be local: {url!r}")
        return FileStore(Path(unquote(parts.path)))
    if url.startswith("s3://"):
        return S3Store(
            parse_s3_url(url),
            access_key=settings.artifacts_access_key or os.environ.get("AWS_ACCESS_KEY_ID", ""),
            secret_key=settings.artifacts_secret_key or os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
            region=settings.artifacts_region
            or os.environ.get("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1")),
            part_size=settings.artifacts_part_size,
        )
    raise ValueError(f"CONVEYOR_ARTIFACTS_URL must be file:// or s3://, got {url!r}")
