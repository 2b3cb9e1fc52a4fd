"""Genetic data: VCF, BCF and PLINK filesets ingested into VCF Zarr (`ingest`), read lazily
in sgkit's names (`reading`)."""
