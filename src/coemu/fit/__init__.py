"""Fitting models to observations: a differentiable forward model, MAP, NUTS, nested sampling, evidence.

Modules (the wind, the viewing rotation and the units are :mod:`coemu.physics`'s):
:mod:`~coemu.fit.family` (families, free parameters, priors),
:mod:`~coemu.fit.data` (reading and checking an observation),
:mod:`~coemu.fit.forward` (parameters -> the observation's cube),
:mod:`~coemu.fit.likelihood` (Gaussian, white or beam-correlated noise; batched for samplers),
:mod:`~coemu.fit.sample` (MAP, NUTS with pyro-ppl, R-hat),
:mod:`~coemu.fit.nested` (nested sampling with nautilus or ultranest: posterior and evidence),
:mod:`~coemu.fit.symmetry` (the viewing-angle partners and the posterior mass near each),
:mod:`~coemu.fit.evidence` (learned harmonic mean, Bayes factors),
:mod:`~coemu.fit.outputs` (netCDF, corner plot, channel maps),
:mod:`~coemu.fit.run` (``coemu fit``), :mod:`~coemu.fit.mock` (mock observations).
The packages pyro-ppl, nautilus-sampler, ultranest, arviz, corner and harmonic come with the ``fit``
extra (``bash scripts/install.sh fit``).
"""
