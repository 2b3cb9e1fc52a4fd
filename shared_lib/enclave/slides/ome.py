"""OME-NGFF metadata of a slide: an RGB multiscale image with axes c, y, x in micrometres.

Stores are OME-NGFF 0.5 (zarr v3), or 0.4 (zarr v2) where the levels keep the source's JPEG
tiles, which only zarr v2's codecs can hold as they are (`jpeg_tiles`)."""

from __future__ import annotations

from dataclasses import dataclass

NGFF_VERSION = "0.5"
TILE_COPY_VERSION = "0.4"
CHANNELS = (("R", "FF0000"), ("G", "00FF00"), ("B", "0000FF"))


@dataclass(frozen=True)
class Level:
    path: str
    scale: tuple[float, float]  # (y, x) pixel pitch, micrometres when the unit is known


def image_attributes(
    name: str, levels: list[Level], unit: str | None, metadata: dict, version: str = NGFF_VERSION
) -> dict:
    """The root group's attributes: under `ome` in 0.5, at the top with a version in 0.4."""
    space = {"type": "space", **({"unit": unit} if unit else {})}
    multiscale = {
        "name": name,
        "axes": [
            {"name": "c", "type": "channel"},
            {"name": "y", **space},
            {"name": "x", **space},
        ],
        "datasets": [
            {
                "path": level.path,
                "coordinateTransformations": [{"type": "scale", "scale": [1.0, *level.scale]}],
            }
            for level in levels
        ],
        "type": "mean",
        "metadata": metadata,
    }
    omero = {
        "channels": [
            {
                "label": label,
                "color": color,
                "active": True,
                "window": {"min": 0, "max": 255, "start": 0, "end": 255},
            }
            for label, color in CHANNELS
        ],
        "rdefs": {"model": "color"},
    }
    if version == TILE_COPY_VERSION:
        return {"multiscales": [{"version": version, **multiscale}], "omero": omero}
    return {"ome": {"version": version, "multiscales": [multiscale], "omero": omero}}


def read_levels(attributes: dict) -> tuple[list[Level], str | None]:
    """The levels and the spatial unit of a store written by `image_attributes`."""
    try:
        ome = attributes.get("ome", attributes)
        multiscale = ome["multiscales"][0]
        axes = [axis["name"] for axis in multiscale["axes"]]
        if axes != ["c", "y", "x"]:
            raise ValueError(f"axes {axes}, expected c, y, x")
        levels = []
        for entry in multiscale["datasets"]:
            (scale,) = [
                t["scale"] for t in entry["coordinateTransformations"] if t["type"] == "scale"
            ]
            levels.append(Level(entry["path"], (float(scale[1]), float(scale[2]))))
        unit = multiscale["axes"][1].get("unit")
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise ValueError(f"not an Enclave slide store (OME-NGFF, c/y/x): {error}") from None
    return levels, unit
