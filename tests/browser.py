"""Screenshots of a page in headless Chromium (Debian's ``chromium``), for the browser tests.

``CHROMIUM`` is None where it is not installed; tests then skip with :data:`SKIP_REASON`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SKIP_REASON = "chromium is not installed (Debian: apt-get install chromium)"


def screenshot(page: Path, work: Path, *, width: int = 1280, height: int = 2000) -> np.ndarray:
    """``page`` drawn by headless Chromium in a ``width`` x ``height`` window, nothing fetched from
    the network; returns the picture as ``[height, width, 3]`` uint8. ``work`` is a folder for the
    browser's profile and the PNG."""
    assert CHROMIUM is not None
    shot = work / "shot.png"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={work / 'profile'}",
        f"--screenshot={shot}",
        f"--window-size={width},{height}",
        page.resolve().as_uri(),
    ]
    subprocess.run(command, check=True, timeout=90, capture_output=True)
    return np.asarray(Image.open(shot).convert("RGB"))


def pixels_near(picture: np.ndarray, colour: tuple[int, int, int], tolerance: int = 6) -> int:
    """How many pixels of ``picture`` ([H, W, 3]) are within ``tolerance`` of ``colour`` in every channel."""
    return int((np.abs(picture.astype(int) - np.array(colour)).max(axis=-1) <= tolerance).sum())
