"""LTE line radiative transfer along the last axis, Pomme-equivalent, in PyTorch.

Modules: :mod:`lamda` (line data), :mod:`lte` (populations, opacity, source
function, width), :mod:`transfer` (segment optical depths of the Gaussian line
and the formal solution), :mod:`solver` (batched, chunked images),
:mod:`spectral` (frequency axis), :mod:`render` (cube file -> image file),
:mod:`reference` (runs pomme for tests and benchmarks).
"""
