"""OME-NGFF 0.5 metadata of a slide: an RGB multiscale image with axes c, y, x in micrometres."""

from __future__ import annotations

from dataclasses import dataclass

NGFF_VERSION = "0.5"
CHANNELS = (("R", "FF0000"), ("G", "00FF00"), ("B", "0000FF"))


@dataclass(frozen=True)
class Level:
    path: str
    scale: tuple[float, float]  # (y, x) pixel pitch, micrometres when the unit is known


def image_attributes(name: str, levels: list[Level], unit: str | None, metadata: dict) -> dict:
    """The `ome` attributes of the store's root group."""
    space = {"type": "space", **({"unit": unit} if unit else {})}
    return {
        "ome": {
            "version": NGFF_VERSION,
            "multiscales": [
                {
                    "name": name,
                    "axes": [
                        {"name": "c", "type": "channel"},
                        {"name": "y", **space},
                        {"name": "x", **space},
                    ],
                    "datasets": [
                        {
                            "path": level.path,
                            "coordinateTransformations": [
                                {"type": "scale", "scale": [1.0, *level.scale]}
                            ],
                        }
                        for level in levels
                    ],
                    "type": "mean",
                    "metadata": metadata,
                }
            ],
            "omero": {
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
            },
        }
    }


def read_levels(attributes: dict) -> tuple[list[Level], str | None]:
    """The levels and the spatial unit of a store written by `image_attributes`."""
    try:
        multiscale = attributes["ome"]["multiscales"][0]
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
        raise ValueError(f"not an Enclave slide store (OME-NGFF 0.5, c/y/x): {error}") from None
    return levels, unit
