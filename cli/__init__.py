"""The `ksf` command: a thin client of the keras_sphereface library.

Installed as the `ksf` package (see `package_dir` in setup.cfg). Each command parses its
options and calls one documented library function; heavy imports happen inside commands.
"""
