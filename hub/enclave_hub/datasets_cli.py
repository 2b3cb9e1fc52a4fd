"""`enclave dataset ...`: ingesting source files into datasets, and listing what is there.

The work is done by the `enclave` library (shared_lib), which reads and writes the data; this
module only parses the verbs and finds the data root (`--data-root`, else the site's).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from .core.site_config import site_config

# The key of the commons release every kind pseudonymises with, so that one person has one
# pseudonym in all of them.
COMMONS_KEY = "commons"
# The folder of the state directory that holds the de-identification keys.
DEID_KEYS_FOLDER = "deid-keys"


def _data_root(args: argparse.Namespace) -> Path:
    return args.data_root if args.data_root is not None else site_config(args.config).data_root


def _ingest(
    args: argparse.Namespace,
    run: Callable[..., list],
    sources: object,
    keyed: bool = False,
    **options: object,
) -> int:
    """Check the dataset id (and read the manifest), then `run(sources, dataset, data root,
    key=... when keyed, **options)` with a progress bar on a terminal: 0 when every source
    went in, 1 when one failed (each named by the run), 2 when nothing could start."""
    from enclave.catalog import CatalogError, check_id

    _quiet_libraries()
    try:
        check_id(args.dataset, "dataset")
        if keyed:
            options["key"] = _key(args)
        if getattr(args, "manifest", None):
            from enclave.persons import SourceManifest

            options["manifest"] = SourceManifest(args.manifest)
        outcomes = run(
            sources,
            args.dataset,
            _data_root(args),
            show_progress=not args.no_progress and sys.stderr.isatty(),
            report=_report,
            **options,
        )
    except CatalogError as error:
        print(f"enclave: {error}", file=sys.stderr)
        return 2
    return 1 if any(o.error for o in outcomes) else 0


def _quiet_libraries() -> None:
    """Hide what libraries log or warn (deprecations, details of a damaged file they read
    around): the run names each source and what went wrong itself. `python -W` still shows
    the warnings."""
    if not sys.warnoptions:
        warnings.simplefilter("ignore")
    logging.disable(logging.ERROR)


def _report(line: str) -> None:
    """A line of an ingest's report: a source's failure on stderr, the rest on stdout."""
    from enclave.registration import FAILED

    print(line, file=sys.stderr if line.startswith(FAILED) else sys.stdout, flush=True)


def cmd_ingest_slides(args: argparse.Namespace) -> int:
    from enclave.slides.ingest import ingest_slides

    return _ingest(
        args,
        ingest_slides,
        args.sources,
        keyed=True,
        workers=args.workers,
    )


def cmd_ingest_dicom(args: argparse.Namespace) -> int:
    from enclave.volumes.ingest import ingest_dicom

    return _ingest(
        args,
        ingest_dicom,
        args.source,
        keyed=True,
        shift_dates=args.shift_dates,
    )


def cmd_ingest_matrix(args: argparse.Namespace) -> int:
    from enclave.matrices.ingest import ingest_matrices

    if args.sample_column and not args.manifest:
        print("enclave: --sample-column needs a --manifest to look it up in", file=sys.stderr)
        return 2
    # A key is made or read only when there is something to pseudonymise.
    return _ingest(
        args,
        ingest_matrices,
        args.sources,
        keyed=bool(args.pseudonymise or args.manifest),
        key=None,
        pseudonymise=args.pseudonymise,
        sample_column=args.sample_column,
    )


def cmd_ingest_omop(args: argparse.Namespace) -> int:
    from enclave.omop.ingest import ingest_omop

    return _ingest(
        args,
        ingest_omop,
        args.source,
        keyed=True,
        object_id=args.object,
        memory_limit=args.memory_limit,
    )


def cmd_ingest_genotypes(args: argparse.Namespace) -> int:
    from enclave.genotypes.ingest import ingest_genotypes

    return _ingest(
        args,
        ingest_genotypes,
        args.sources,
        keyed=True,
        object_id=args.object,
        workers=args.workers,
        memory_limit=args.memory_limit,
    )


def _key(args: argparse.Namespace) -> bytes:
    """The pseudonym key named on the command line (default: the commons release's)."""
    from enclave.catalog import check_id
    from enclave.pseudonyms import load_key

    name = check_id(args.key_name or COMMONS_KEY, "key name")
    return load_key(args.key_file or _keys_dir(args) / f"{name}.key")


def _keys_dir(args: argparse.Namespace) -> Path:
    """Where de-identification keys live: the state directory, which sessions never see."""
    return site_config(args.config).state_dir / DEID_KEYS_FOLDER


def cmd_list(args: argparse.Namespace) -> int:
    from enclave.catalog import dataset, datasets

    root = _data_root(args)
    for dataset_id in datasets(root):
        found = dataset(dataset_id, root)
        manifest = found.manifest
        print(f"{dataset_id:<24} {manifest.get('kind', '-'):<10} {len(found.objects)} objects")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from enclave.catalog import CatalogError, dataset

    try:
        print(json.dumps(dataset(args.dataset, _data_root(args)).manifest, indent=2))
    except CatalogError as error:
        print(f"enclave: {error}", file=sys.stderr)
        return 2
    return 0


def add_dataset_verbs(verbs: argparse._SubParsersAction) -> None:
    dataset = verbs.add_parser("dataset", help="ingest data into datasets, list them")
    sub = dataset.add_subparsers(dest="dataset_verb", required=True)

    def key_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--key-name",
            help=f"the pseudonym key to use (one per commons release; default: {COMMONS_KEY}), "
            "kept in the state directory",
        )
        parser.add_argument("--key-file", type=Path, help="a key file instead of a named key")

    def manifest_option(parser: argparse.ArgumentParser, names: str) -> None:
        parser.add_argument(
            "--manifest",
            type=Path,
            metavar="FILE.csv",
            help=f"a CSV of source,patient_id (and attributes): each {names}'s patient id",
        )

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--data-root", type=Path, help="default: the site's data root")
        parser.add_argument("--config", type=Path, help="site configuration file (YAML)")

    ingest = sub.add_parser("ingest", help="convert source files into a dataset")
    kinds = ingest.add_subparsers(dest="kind", required=True)
    slides = kinds.add_parser("slides", help="whole-slide images (SVS, tiled TIFF) to OME-Zarr")
    slides.add_argument("sources", nargs="+", type=Path, metavar="SOURCE")
    slides.add_argument("--dataset", required=True, help="the dataset id to add them to")
    slides.add_argument("--workers", type=int, default=2, help="threads per slide (default 2)")
    manifest_option(slides, "slide file")
    key_options(slides)
    slides.add_argument("--no-progress", action="store_true", help="no progress bar")
    common(slides)
    slides.set_defaults(handler=cmd_ingest_slides)

    dicom = kinds.add_parser("dicom", help="DICOM series to de-identified OME-Zarr volumes")
    dicom.add_argument("source", type=Path, metavar="SOURCE", help="a folder or a DICOMDIR")
    dicom.add_argument("--dataset", required=True, help="the dataset id to add them to")
    manifest_option(dicom, "PatientID")
    key_options(dicom)
    dicom.add_argument(
        "--shift-dates", action="store_true", help="shift dates per patient instead of removing"
    )
    dicom.add_argument("--no-progress", action="store_true", help="no progress bar")
    common(dicom)
    dicom.set_defaults(handler=cmd_ingest_dicom)

    matrix = kinds.add_parser(
        "matrix", help="genomic matrices (.h5ad, 10x .h5, Matrix Market folders) to AnnData Zarr"
    )
    matrix.add_argument("sources", nargs="+", type=Path, metavar="SOURCE")
    matrix.add_argument("--dataset", required=True, help="the dataset id to add them to")
    matrix.add_argument(
        "--pseudonymise",
        action="append",
        default=[],
        metavar="COLUMN",
        help="an obs column of sample or donor ids to replace by keyed pseudonyms (repeatable)",
    )
    manifest_option(matrix, "source file (or sample, with --sample-column)")
    matrix.add_argument(
        "--sample-column", help="the obs column whose values the manifest names (a sample sheet)"
    )
    key_options(matrix)
    matrix.add_argument("--no-progress", action="store_true", help="no progress bar")
    common(matrix)
    matrix.set_defaults(handler=cmd_ingest_matrix)

    omop = kinds.add_parser(
        "omop", help="OMOP CDM 5.4 tables (CSV, .csv.gz, Parquet) to de-identified Parquet"
    )
    omop.add_argument("source", type=Path, metavar="SOURCE", help="a folder, a file per table")
    omop.add_argument("--dataset", required=True, help="the dataset id to add it to")
    omop.add_argument("--object", help="the object id (default: from the folder's name)")
    omop.add_argument(
        "--memory-limit", default="2GB", help="the ingest's memory (default 2GB); beyond, spill"
    )
    key_options(omop)
    omop.add_argument("--no-progress", action="store_true", help="no progress bar")
    common(omop)
    omop.set_defaults(handler=cmd_ingest_omop)

    genotypes = kinds.add_parser(
        "genotypes",
        help="VCF or BCF files (sharing their samples), or a PLINK 1.9 fileset, to VCF Zarr",
    )
    genotypes.add_argument(
        "sources", nargs="+", type=Path, metavar="SOURCE", help="VCF/BCF files, or a .bed"
    )
    genotypes.add_argument("--dataset", required=True, help="the dataset id to add them to")
    genotypes.add_argument("--object", help="the object id (default: from the first file)")
    genotypes.add_argument(
        "--workers", type=int, help="conversion processes (default: one per core)"
    )
    genotypes.add_argument(
        "--memory-limit", default="2GB", help="the encoding's memory (default 2GB)"
    )
    manifest_option(genotypes, "sample")
    key_options(genotypes)
    genotypes.add_argument("--no-progress", action="store_true", help="no progress bar")
    common(genotypes)
    genotypes.set_defaults(handler=cmd_ingest_genotypes)

    listing = sub.add_parser("list", help="the datasets in the data root")
    common(listing)
    listing.set_defaults(handler=cmd_list)

    show = sub.add_parser("show", help="a dataset's dataset.json")
    show.add_argument("dataset")
    common(show)
    show.set_defaults(handler=cmd_show)
