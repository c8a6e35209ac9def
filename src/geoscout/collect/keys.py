"""API keys: where they come from, and how they are kept out of logs, errors and files.

Keys are read from environment variables or from a TOML file (``~/.config/geoscout/keys.toml``
by default, ``$GEOSCOUT_KEYS_FILE`` to move it) that must not be readable by group or others.
Every message that could contain a key goes through a :class:`Redactor` first.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import tomllib
from pathlib import Path
from urllib.parse import quote, quote_plus

from geoscout._io import open_user_file
from geoscout.errors import InvalidInput

__all__ = ["KEY_SOURCES", "Redactor", "default_keys_file", "load_key", "redact_logs"]

#: provider -> (environment variable, key name in keys.toml)
KEY_SOURCES: dict[str, tuple[str, str]] = {
    "streetview": ("GOOGLE_MAPS_API_KEY", "google_maps_api_key"),
    "mapillary": ("MAPILLARY_ACCESS_TOKEN", "mapillary_access_token"),
}


def default_keys_file() -> Path:
    """``$GEOSCOUT_KEYS_FILE``, else ``$XDG_CONFIG_HOME/geoscout/keys.toml``, else ``~/.config/geoscout/keys.toml``."""
    env = os.environ.get("GEOSCOUT_KEYS_FILE")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "geoscout" / "keys.toml"


def _read_keys_file(path: Path) -> dict[str, object]:
    if sys.platform != "win32":
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InvalidInput(
                f"{path}: the keys file is readable by other users (mode {stat.S_IMODE(mode):o}); "
                f"run `chmod 600 {path}` and try again"
            )
    try:
        with open_user_file(path, max_bytes=1024 * 1024) as fh:  # a regular file of at most 1 MiB
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        # the parser's message quotes no values, only positions
        raise InvalidInput(
            f"{path}: not valid TOML ({exc}); expected lines like google_maps_api_key = \"...\""
        ) from None


def load_key(provider: str, *, keys_file: str | os.PathLike[str] | None = None) -> str:
    """The API key of ``provider`` ("streetview" or "mapillary"): environment variable first, then the keys file.

    The keys file is TOML with top-level entries ``google_maps_api_key`` / ``mapillary_access_token``
    (or a ``[streetview]`` / ``[mapillary]`` table with ``key``). Raises :class:`InvalidInput` saying
    where to put the key when none is found; the message never contains a key.
    """
    if provider not in KEY_SOURCES:
        raise InvalidInput(f"no API key source for provider {provider!r}; known: {sorted(KEY_SOURCES)}")
    env_name, toml_name = KEY_SOURCES[provider]
    value = os.environ.get(env_name, "").strip()
    if value:
        return value
    path = Path(keys_file).expanduser() if keys_file is not None else default_keys_file()
    if path.is_file():
        data = _read_keys_file(path)
        cand = data.get(toml_name)
        table = data.get(provider)
        if cand is None and isinstance(table, dict):
            cand = table.get("key")
        if isinstance(cand, str) and cand.strip():
            return cand.strip()
    elif keys_file is not None:
        raise InvalidInput(f"{path}: keys file not found")
    raise InvalidInput(
        f"no API key for {provider}: set the environment variable {env_name}, or write "
        f'{toml_name} = "..." into {path} (chmod 600). See docs/collect.md.'
    )


class Redactor:
    """Replaces every known secret (and its URL-encoded forms) in a text by ``***``."""

    def __init__(self, secrets: list[str] | tuple[str, ...] = ()) -> None:
        self._forms: list[str] = []
        for s in secrets:
            self.add(s)

    def add(self, secret: str | None) -> None:
        """Register one more secret (ignores empty values)."""
        if not secret:
            return
        for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
            if form and form not in self._forms:
                self._forms.append(form)
        self._forms.sort(key=len, reverse=True)

    def __call__(self, text: object) -> str:
        out = str(text)
        for form in self._forms:
            out = out.replace(form, "***")
        return out


class _RedactFilter(logging.Filter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a broken format string: keep the raw message, redacted
            msg = str(record.msg)
        clean = self.redactor(msg)
        if clean != msg or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redactor(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


#: loggers of the HTTP stack that may print request URLs (httpx logs "HTTP Request: GET <url>")
_HTTP_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "geoscout",
    "geoscout.collect",
)


def redact_logs(redactor: Redactor) -> list[tuple[logging.Logger, logging.Filter]]:
    """Install a filter that redacts ``redactor``'s secrets on the HTTP and geoscout loggers.

    Returns the (logger, filter) pairs so a caller can remove them again.
    """
    flt = _RedactFilter(redactor)
    pairs: list[tuple[logging.Logger, logging.Filter]] = []
    for name in _HTTP_LOGGERS:
        lg = logging.getLogger(name)
        lg.addFilter(flt)
        pairs.append((lg, flt))
    return pairs
