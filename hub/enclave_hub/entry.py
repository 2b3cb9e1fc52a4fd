"""The `enclave` command's entry point, light to import: the worker processes a command starts
(multiprocessing's spawn) import the command's script again, and the verbs of `cli` with it
would cost each of them most of a second."""

from __future__ import annotations


def main() -> int:
    from .cli import main as run_command

    return run_command()
