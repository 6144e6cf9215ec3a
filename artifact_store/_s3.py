"""An ``s3://bucket/prefix`` remote through obstore (extra ``s3``).

obstore is used rather than ``pyarrow.fs.S3FileSystem`` because it exposes S3's conditional create
(``PutObject`` with ``If-None-Match: *``, ``put(..., mode="create")``): a second writer of a key gets
``AlreadyExistsError`` (HTTP 412) instead of overwriting. pyarrow's output streams always overwrite. Both were
checked against moto's server; moto answers the conditional PUT with 412 as S3 does.

Credentials, region and endpoint come from the standard AWS environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``);
an ``http://`` endpoint (a local MinIO or moto) is allowed.
"""

from __future__ import annotations

import os
from typing import Any

from artifact_lake.schemas.errors import MissingExtra

from .errors import InvalidInput, NotFound


def _obstore() -> Any:
    try:
        import obstore
    except ImportError as exc:
        raise MissingExtra("s3", "an s3:// remote", "obstore") from exc
    return obstore


class S3Backend:
    """Keys below ``s3://bucket/prefix``, written with conditional creates."""

    def __init__(self, url: str) -> None:
        obs = _obstore()
        from obstore.store import S3Store

        self.url = url
        self._obs = obs
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
        options: Any = {"allow_http": True} if endpoint.startswith("http://") else None
        try:
            self.store = S3Store.from_url(url, client_options=options)  # reads the AWS_* environment
        except Exception as exc:  # noqa: BLE001 - obstore's configuration errors have no common base
            raise InvalidInput(f"remote {url}: {_first_line(exc)}") from exc

    def _fail(self, key: str, exc: Exception) -> InvalidInput:
        return InvalidInput(f"remote {self.url}: cannot reach {key} ({_first_line(exc)})")

    def create(self, key: str, data: bytes) -> bool:
        from obstore.exceptions import AlreadyExistsError

        try:
            self._obs.put(self.store, key, data, mode="create")
        except AlreadyExistsError:
            return False
        except FileNotFoundError as exc:  # no such bucket
            raise self._fail(key, exc) from exc
        except Exception as exc:  # noqa: BLE001 - network, credentials: one line naming the remote
            raise self._fail(key, exc) from exc
        return True

    def get(self, key: str) -> bytes:
        try:
            return bytes(self._obs.get(self.store, key).bytes())
        except FileNotFoundError:
            raise NotFound(f"{self.url}: no {key}") from None
        except Exception as exc:  # noqa: BLE001
            raise self._fail(key, exc) from exc

    def exists(self, key: str) -> bool:
        try:
            self._obs.head(self.store, key)
        except FileNotFoundError:
            return False
        except Exception as exc:  # noqa: BLE001
            raise self._fail(key, exc) from exc
        return True

    def list(self, prefix: str) -> list[str]:
        try:
            return sorted(str(m["path"]) for batch in self._obs.list(self.store, prefix=prefix) for m in batch)
        except FileNotFoundError as exc:
            raise self._fail(prefix, exc) from exc
        except Exception as exc:  # noqa: BLE001
            raise self._fail(prefix, exc) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
