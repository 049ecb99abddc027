"""The package version, single-sourced for setup.cfg and `ksf --version`."""

__version__ = "0.1.0"
