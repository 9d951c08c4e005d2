"""Hydro models: the point-cloud contract, the synthetic generator, readers.

Kept import-light (no numpy at package import) because the Snakefile imports
:mod:`coemu.hydro.catalog` on every run, dry runs included.
"""
