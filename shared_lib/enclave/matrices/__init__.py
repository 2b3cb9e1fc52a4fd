"""Genomic matrices: cells x features, ingested as AnnData Zarr and read lazily."""
