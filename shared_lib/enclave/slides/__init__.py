"""Whole-slide pathology images: ingest into OME-Zarr, read lazily, tile, view."""
