"""Running a napari script the way a notebook session does: no display, so `enclave.view`
starts its own Xvfb and renders off-screen."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np


def run_without_display(script: str, *arguments: str) -> dict:
    """Run `script` in a fresh Python with no DISPLAY; the JSON object its last line prints."""
    environment = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = subprocess.run(
        [sys.executable, "-c", script, *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def bounding_box(pixels: np.ndarray) -> tuple[int, int, int, int]:
    """Where the canvas is not its black background: top, bottom, left, right."""
    rows, cols = np.nonzero(pixels[..., :3].max(axis=2) > 40)
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
