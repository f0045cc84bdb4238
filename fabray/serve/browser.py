"""Headless Chromium over the zone board (`GET /`, fabray/serve/board): the rendered DOM and a
screenshot. Used by the board's browser test and by `fabray demo`. Chromium is Debian's
`chromium` package (`make test` installs it when missing); `find_chromium()` is None without it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

#: Flags of every run: headless, no sandbox (root in CI containers), no GPU, a throwaway profile.
#: `--virtual-time-budget` lets the page's first refresh (its fetches) finish before the dump.
BASE_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars")


def find_chromium() -> str | None:
    """The Chromium executable on PATH, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(args: list[str], what: str, timeout_s: float) -> subprocess.CompletedProcess:
    browser = find_chromium()
    if browser is None:
        raise RuntimeError("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="fabray-chromium-") as profile:
        try:
            done = subprocess.run([browser, *BASE_FLAGS, f"--user-data-dir={profile}", *args],
                                  capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"chromium could not {what} within {timeout_s:g} s") from None
    if done.returncode != 0:
        raise RuntimeError(f"chromium could not {what} (exit {done.returncode}): {done.stderr[-1500:]}")
    return done


def dump_dom(url: str, *, budget_ms: int = 3000, timeout_s: float = 180) -> str:
    """The page's DOM after `budget_ms` of virtual time (its scripts and fetches done)."""
    done = _run([f"--virtual-time-budget={budget_ms}", "--dump-dom", url], "render " + url, timeout_s)
    return done.stdout


def screenshot(url: str, path: str | Path, *, size: tuple[int, int] = (1280, 900), budget_ms: int = 3000,
               timeout_s: float = 180) -> Path:
    """A PNG of the page at `size` after `budget_ms` of virtual time; returns its path."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    _run([f"--virtual-time-budget={budget_ms}", f"--window-size={size[0]},{size[1]}",
          f"--screenshot={path}", url], "take a screenshot of " + url, timeout_s)
    if not path.is_file():
        raise RuntimeError(f"chromium wrote no screenshot of {url}")
    return path
