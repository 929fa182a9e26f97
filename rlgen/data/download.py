"""Fetching original dataset files, verified against their published checksums.

Only :data:`urlopen` touches the network; tests replace it (``monkeypatch.setattr``) so nothing in
the test suite ever goes online. A file is streamed into a temp file beside its destination,
checked, and only then renamed into place, so a cut connection never leaves a half file under the
real name.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlgen.data.formats import md5sum

# Short: an unreachable host should fail fast and turn into the "place the files here" message.
TIMEOUT_S = 15.0

urlopen = urllib.request.urlopen


class DownloadError(OSError):
    """Every mirror failed for one file; the message lists each URL and why."""


def fetch(urls: Sequence[str], dest: Path, md5: str | None, quiet: bool = False) -> None:
    """Download the first mirror that works to ``dest``; an MD5 mismatch counts as that mirror failing."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urlopen(url, timeout=TIMEOUT_S) as resp:
                total = int(getattr(resp, "headers", {}).get("Content-Length") or 0)
                bar = _progress(dest.name, total, quiet)
                for block in iter(lambda: resp.read(1 << 16), b""):
                    out.write(block)
                    if bar is not None:
                        bar.update(len(block))
                if bar is not None:
                    bar.close()
            if md5 is not None and (got := md5sum(tmp)) != md5:
                failures.append(f"{url}: checksum mismatch (MD5 {got}, expected {md5})")
                continue
            os.replace(tmp, dest)
            return
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", None) or err
            failures.append(f"{url}: {reason}")
        finally:
            Path(tmp).unlink(missing_ok=True)
    raise DownloadError("; ".join(failures))


def _progress(name: str, total: int, quiet: bool) -> Any:
    if quiet:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total or None, unit="B", unit_scale=True, desc=f"downloading {name}", leave=False)
