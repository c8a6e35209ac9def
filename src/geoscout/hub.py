"""Share model bundles through the Hugging Face hub: push a bundle, load ``hf-bundle:user/name[@revision]``.

Loading goes through ``huggingface_hub``'s cache (``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` and ``local_files_only``
work as for any hub model): ``config.json`` is fetched first, then exactly the files it lists (nothing else in
the repository is downloaded), and the bundle is opened with :meth:`ModelBundle.load`, which checks every file's
SHA-256 against ``config.json`` and reads only JSON and safetensors: nothing is unpickled. Pin a revision
(``@<commit>``) to make ``config.json`` itself immutable.

:func:`export_to_cache` writes a bundle into a folder laid out like the hub cache (``models--user--name/``
``blobs``, ``snapshots/<commit>``, ``refs/<revision>``), for machines without network access.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from ._io import atomic_path, sha256_file
from .bundle import CARD, CONFIG, ModelBundle
from .errors import InvalidInput, MissingWeights

__all__ = [
    "HUB_PREFIX",
    "download_bundle",
    "export_to_cache",
    "is_hub_ref",
    "load_hub_bundle",
    "parse_hub_ref",
    "push_bundle",
]

HUB_PREFIX = "hf-bundle:"
_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def is_hub_ref(model: Any) -> bool:
    """True for ``"hf-bundle:user/name[@revision]"``."""
    return isinstance(model, str) and model.startswith(HUB_PREFIX)


def parse_hub_ref(ref: str) -> tuple[str, str | None]:
    """``"hf-bundle:user/name@rev"`` (or ``"user/name@rev"``) -> ``("user/name", "rev")``; revision None if absent."""
    body = ref[len(HUB_PREFIX) :] if ref.startswith(HUB_PREFIX) else ref
    repo, _, rev = body.partition("@")
    if not _REPO_RE.match(repo) or ".." in repo or (_ and not rev):
        raise InvalidInput(
            f"{ref!r}: expected {HUB_PREFIX}USER/NAME or {HUB_PREFIX}USER/NAME@REVISION "
            "(a hub model repository id, optionally a branch, tag or commit)"
        )
    return repo, rev or None


def _bundle_files(config: dict[str, Any], where: str) -> list[str]:
    files = config.get("files")
    if not isinstance(files, dict) or not files:
        raise InvalidInput(f"{where}: config.json lists no bundle files with checksums; not a geoscout bundle")
    for name, digest in files.items():
        if not isinstance(name, str) or not _FILE_RE.match(name) or name == CONFIG:
            raise InvalidInput(f"{where}: config.json lists the file name {name!r}; bundle files are plain names")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise InvalidInput(f"{where}: config.json gives {name!r} no SHA-256 checksum")
    return sorted(files)


def _read_config(path: Path, where: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(16 << 20)  # a bundle config is kilobytes; bound the read
        config = json.loads(raw)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"{where}: unreadable config.json ({exc})") from None
    if not isinstance(config, dict) or config.get("kind", "geoscout-model-bundle") != "geoscout-model-bundle":
        raise InvalidInput(f"{where}: config.json is not a geoscout model bundle's")
    return config


# ---------------------------------------------------------------------------------------------- loading


def download_bundle(
    ref: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
) -> Path:
    """Fetch (or find in the hub cache) the bundle ``ref`` and return its snapshot folder (files not yet verified).

    ``local_files_only`` (default: ``HF_HUB_OFFLINE``) never touches the network. Raises
    :class:`MissingWeights` when the bundle is not in the cache offline or not on the hub.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo, rev = parse_hub_ref(ref)
    kw: dict[str, Any] = {"repo_id": repo, "repo_type": "model", "revision": rev, "token": token}
    # the environment is read now (huggingface_hub reads it once, at import)
    cache_dir = cache_dir if cache_dir is not None else os.environ.get("HF_HUB_CACHE") or None
    if cache_dir is not None:
        kw["cache_dir"] = str(cache_dir)
    if local_files_only is None:
        local_files_only = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    kw["local_files_only"] = bool(local_files_only)

    def fetch(name: str) -> Path:
        try:
            return Path(hf_hub_download(filename=name, **kw))
        except LocalEntryNotFoundError:
            raise MissingWeights(
                f"{ref}: {name} is not in the hub cache and the network is off or unreachable; run once online "
                "(or unset HF_HUB_OFFLINE), or copy a cache made by `geoscout push BUNDLE REPO --to-cache DIR` "
                "and set HF_HUB_CACHE=DIR"
            ) from None
        except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
            raise MissingWeights(
                f"{ref}: no such model repository or revision on the hub ({type(exc).__name__})"
            ) from None
        except EntryNotFoundError:
            raise MissingWeights(f"{ref}: the repository has no {name}; is it a geoscout bundle?") from None
        except HfHubHTTPError as exc:
            raise MissingWeights(f"{ref}: the hub refused {name} ({exc.__class__.__name__})") from None

    config_path = fetch(CONFIG)
    config = _read_config(config_path, ref)
    for name in _bundle_files(config, ref):
        fetch(name)
    return config_path.parent


def load_hub_bundle(ref: str, **kwargs: Any) -> tuple[ModelBundle, Path]:
    """:func:`download_bundle` then :meth:`ModelBundle.load` with SHA-256 verification; returns (bundle, folder)."""
    folder = download_bundle(ref, **kwargs)
    try:  # the cache links snapshots/<commit>/<file> to the repository's blobs/: links may point there
        return ModelBundle.load(folder, verify=True, links_within=folder.parent.parent), folder
    except InvalidInput as exc:
        raise InvalidInput(f"{ref}: {exc}") from None


# ---------------------------------------------------------------------------------------------- pushing


def _card_readme(card: str, repo: str) -> bytes:
    """The hub's README.md: YAML metadata (library, tags) + the bundle's model card."""
    head = "---\nlibrary_name: geoscout\ntags:\n- geoscout\n- geolocation\n- image-geolocation\n---\n\n"
    return (head + (card or f"# {repo}\n\nA geoscout model bundle.\n")).encode("utf-8")


def _checked_bundle(bundle_dir: str | os.PathLike[str]) -> tuple[Path, dict[str, Any], list[str]]:
    root = Path(bundle_dir).expanduser()
    ModelBundle.load(root, verify=True)  # refuse to share a damaged bundle
    config = _read_config(root / CONFIG, str(root))
    return root, config, _bundle_files(config, str(root))


def push_bundle(
    bundle_dir: str | os.PathLike[str],
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
    token: str | bool | None = None,
    api: Any = None,
) -> str:
    """Upload the bundle's files (those ``config.json`` lists, plus ``config.json`` and a hub ``README.md``) in one
    commit to the model repository ``repo_id`` (created if missing); returns the commit URL.

    The token comes from ``token``, ``HF_TOKEN`` or ``huggingface-cli login``; it is never printed.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    repo, rev = parse_hub_ref(repo_id if revision is None else f"{repo_id}@{revision}")
    root, config, names = _checked_bundle(bundle_dir)
    api = api if api is not None else HfApi(token=token)
    api.create_repo(repo_id=repo, repo_type="model", private=private, exist_ok=True)
    if rev:
        api.create_branch(repo_id=repo, repo_type="model", branch=rev, exist_ok=True)
    card = (root / CARD).read_text(encoding="utf-8") if (root / CARD).is_file() else ""
    ops = [CommitOperationAdd(path_in_repo=n, path_or_fileobj=str(root / n)) for n in [*names, CONFIG]]
    ops.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=_card_readme(card, repo)))
    info = api.create_commit(
        repo_id=repo,
        repo_type="model",
        revision=rev,
        operations=ops,
        commit_message=commit_message or f"geoscout bundle ({config.get('head', {}).get('name', 'model')} head)",
    )
    return str(getattr(info, "commit_url", info))


def export_to_cache(
    bundle_dir: str | os.PathLike[str], repo_id: str, cache_dir: str | os.PathLike[str], *, revision: str = "main"
) -> Path:
    """Write the bundle into ``cache_dir`` laid out like the hub cache (as ``huggingface_hub`` would after a
    download), so ``hf-bundle:REPO`` loads offline with ``HF_HUB_CACHE=cache_dir``; returns the snapshot folder.

    The snapshot's "commit" id is the SHA-1 of the files' names and SHA-256 digests (content-addressed).
    """
    repo, rev = parse_hub_ref(repo_id if "@" in repo_id else f"{repo_id}@{revision}")
    rev = rev or "main"
    if re.fullmatch(r"[0-9a-f]{40}", rev):
        raise InvalidInput(f"revision {rev!r}: give a branch or tag name; the commit id is computed from the files")
    root, _config, names = _checked_bundle(bundle_dir)
    files = [*names, CONFIG]
    digests = {n: sha256_file(root / n) for n in files}
    commit = hashlib.sha1(
        "".join(f"{n}\0{digests[n]}\n" for n in sorted(files)).encode(), usedforsecurity=False
    ).hexdigest()
    base = Path(cache_dir).expanduser() / ("models--" + repo.replace("/", "--"))
    snap = base / "snapshots" / commit
    (base / "blobs").mkdir(parents=True, exist_ok=True)
    snap.mkdir(parents=True, exist_ok=True)
    for n in files:
        blob = base / "blobs" / digests[n]
        if not (blob.is_file() and sha256_file(blob) == digests[n]):
            with atomic_path(blob) as tmp:
                shutil.copyfile(root / n, tmp)
        link = snap / n
        if link.is_symlink() or link.exists():
            link.unlink()
        try:
            link.symlink_to(os.path.relpath(blob, snap))
        except OSError:  # no symlinks (some Windows set-ups): the hub library copies too
            shutil.copyfile(blob, link)
    with atomic_path(base / "refs" / rev) as tmp:
        tmp.write_text(commit, encoding="utf-8")
    return snap
