"""`enclave.view`: napari at physical scale, on a screen or rendered off-screen.

With a display, napari opens a window. Without one (a notebook session), a private virtual
display (Xvfb) is started once for this process, napari renders there, and the view comes
back as an image that notebooks show inline. napari draws with OpenGL through Qt, which
Qt's own 'offscreen' platform cannot provide; Xvfb with Mesa can.
"""

from __future__ import annotations

import atexit
import io
import os
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np
from PIL import Image

VIEW_SIZE = (1024, 768)


class ViewError(RuntimeError):
    """napari cannot be shown or rendered here; the message says why."""


@dataclass(frozen=True)
class Snapshot:
    """A rendered view: the pixels (height, width, 4), shown inline by notebooks."""

    pixels: np.ndarray

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(self.pixels).save(buffer, format="PNG")
        return buffer.getvalue()

    def save(self, path) -> None:
        Image.fromarray(self.pixels).save(path)


_virtual_display: subprocess.Popen | None = None


def has_screen() -> bool:
    """Whether DISPLAY names a screen someone looks at, not the virtual one started here."""
    return bool(os.environ.get("DISPLAY")) and _virtual_display is None


def start_virtual_display() -> str:
    """Start Xvfb for this process (once) and point DISPLAY at it; the display's name."""
    global _virtual_display
    if _virtual_display is None:
        xvfb = shutil.which("Xvfb")
        if xvfb is None:
            raise ViewError("there is no display, and Xvfb is not installed to render off-screen")
        read_end, write_end = os.pipe()
        command = [xvfb, "-displayfd", str(write_end), "-screen", "0", "1920x1080x24"]
        _virtual_display = subprocess.Popen(
            [*command, "-nolisten", "tcp"],
            pass_fds=(write_end,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(write_end)
        with os.fdopen(read_end) as chosen:
            number = chosen.readline().strip()
        if not number:
            raise ViewError("Xvfb did not start")
        os.environ["DISPLAY"] = f":{number}"
        atexit.register(_virtual_display.terminate)
    return os.environ["DISPLAY"]


def view(slide, show: bool | None = None, size: tuple[int, int] = VIEW_SIZE):
    """Show a slide (one RGB multiscale layer) or a volume (`open_volume`'s DataArray) at
    physical scale.

    On a display (or with `show=True`) returns the napari Viewer; otherwise a `Snapshot`.
    """
    on_screen = show if show is not None else has_screen()
    if not on_screen:
        start_virtual_display()
    import napari  # after DISPLAY is set: Qt reads it once

    layer = slide.to_napari() if hasattr(slide, "to_napari") else slide.volume.to_napari()
    data, options, _ = layer
    viewer = napari.Viewer(show=on_screen)
    viewer.add_image(data, **options)
    if on_screen:
        return viewer
    try:
        return Snapshot(render(viewer, size))
    finally:
        viewer.close()


def render(viewer, size: tuple[int, int] = VIEW_SIZE) -> np.ndarray:
    """The canvas of a hidden viewer, (height, width, 4).

    A viewer that was never shown grabs an empty framebuffer, so its window is shown with
    Qt told not to put it on screen (napari offers no public way to do this).
    """
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    window = viewer.window._qt_window
    window.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen, True)
    window.resize(*size)
    window.show()
    QApplication.processEvents()
    viewer.reset_view()
    QApplication.processEvents()
    return viewer.screenshot(canvas_only=True, flash=False)
