"""LTE line radiative transfer along the last axis, Pomme-equivalent, in PyTorch.

Modules: :mod:`lamda` (line data), :mod:`lte` (populations, emissivity,
opacity), :mod:`optical_depth` (segment optical depths of the Gaussian line),
:mod:`formal_solution`, :mod:`solver` (batched, chunked images),
:mod:`spectral` (frequency axis), :mod:`render` (cube file -> image file).
"""
