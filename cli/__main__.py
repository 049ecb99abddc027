"""Allows `python -m ksf`."""

from ksf.main import cli

if __name__ == "__main__":
    cli()
