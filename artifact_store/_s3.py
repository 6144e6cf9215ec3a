"""An ``s3://bucket/prefix`` remote through obstore (extra ``s3``).

obstore is used rather than ``pyarrow.fs.S3FileSystem`` because it exposes S3's conditional create
(``PutObject`` with ``If-None-Match: *``, ``put(..., mode="create")``): a second writer of a key gets
``AlreadyExistsError`` (HTTP 412) instead of overwriting. pyarrow's output streams always overwrite. Both were
checked against moto's server; moto answers the conditional PUT with 412 as S3 does.

Credentials, region and endpoint come from the standard AWS environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``),
and what the environment leaves unset from the shared files' profile (:func:`profile_settings`:
``~/.aws/credentials`` and ``~/.aws/config``, or ``$AWS_SHARED_CREDENTIALS_FILE`` and ``$AWS_CONFIG_FILE``;
profile ``$AWS_PROFILE``, else ``default``), as the AWS CLI and boto3 resolve them. An ``http://`` endpoint (a
local MinIO or moto) is allowed.
"""

from __future__ import annotations

import configparser
import os
from pathlib import Path
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
        settings: Any = profile_settings()
        endpoint = (
            os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or settings.get("endpoint", "")
        )
        options: Any = {"allow_http": True} if endpoint.startswith("http://") else None
        try:  # reads the AWS_* environment; the profile fills in what it leaves unset
            self.store = S3Store.from_url(url, client_options=options, config=settings or None)
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


_PROFILE_KEYS = {
    "aws_access_key_id": "access_key_id",
    "aws_secret_access_key": "secret_access_key",
    "aws_session_token": "session_token",
    "region": "region",
    "endpoint_url": "endpoint",
}
"""Shared-file keys this backend reads -> obstore's S3 config keys."""
_ENV_KEYS = {
    "access_key_id": ("AWS_ACCESS_KEY_ID",),
    "secret_access_key": ("AWS_SECRET_ACCESS_KEY",),
    "session_token": ("AWS_SESSION_TOKEN",),
    "region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "endpoint": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
}
_OVERRIDING = ("role_arn", "web_identity_token_file", "sso_session", "sso_start_url")
"""Profile keys whose credentials botocore takes before the profile's static keys (none is run here)."""


def profile_settings() -> dict[str, str]:
    """What the AWS shared files say for the profile in use, for every setting the environment leaves unset.

    Precedence as the AWS CLI's: environment, then the credentials file, then the config file
    (``[profile NAME]``, or ``[default]``). Credentials come as a whole: when ``AWS_ACCESS_KEY_ID`` is set none
    are read from the files (and the profile's kind of credentials does not matter). A profile named by
    ``$AWS_PROFILE`` that neither file has, and, without credentials in the environment, a profile whose
    credentials come from an assumed role, SSO or a process (not run here), are one line each."""
    profile = os.environ.get("AWS_PROFILE") or os.environ.get("AWS_DEFAULT_PROFILE")
    name = profile or "default"
    config_file = Path(os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config").expanduser()
    creds_file = Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials").expanduser()
    found: dict[str, str] = {}
    seen = False
    for path, section in ((config_file, "default" if name == "default" else f"profile {name}"), (creds_file, name)):
        values = _section(path, section)
        if values is not None:
            seen = True
            found.update(values)  # the credentials file, read second, wins
    if profile and not seen:
        raise InvalidInput(f"AWS profile {profile!r} (AWS_PROFILE) is in neither {config_file} nor {creds_file}")
    env_has_credentials = bool(os.environ.get("AWS_ACCESS_KEY_ID"))
    # botocore's order: an assumed role, web identity or SSO wins over a profile's static keys, which win over
    # a credential process; none of those three is run here, so such a profile is refused unless the
    # environment carries credentials (what the suggested export gives)
    how = next((k for k in _OVERRIDING if k in found), None)
    if how is None and "aws_access_key_id" not in found and "credential_process" in found:
        how = "credential_process"
    if how is not None and not env_has_credentials:
        raise InvalidInput(
            f"AWS profile {name!r} gets its credentials through {how}, which artifact-lake does not run: export them"
            ' (eval "$(aws configure export-credentials --profile NAME --format env)")'
        )
    out: dict[str, str] = {}
    for key, target in _PROFILE_KEYS.items():
        if key not in found or any(os.environ.get(v) for v in _ENV_KEYS[target]):
            continue
        if env_has_credentials and target in ("access_key_id", "secret_access_key", "session_token"):
            continue
        out[target] = found[key]
    return out


def _section(path: Path, section: str) -> dict[str, str] | None:
    """The keys of ``section`` in an AWS shared file (None: no such file or section); a file that does not
    parse is one line naming it."""
    if not path.is_file():
        return None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: not an AWS shared config file ({_first_line(exc)})") from exc
    if not parser.has_section(section):
        return None
    return {k: v.strip() for k, v in parser.items(section) if v.strip()}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
