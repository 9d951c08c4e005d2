"""The physics every stage shares, written once, in device-agnostic torch.

* :mod:`~coemu.physics.wind`: the synthetic AGB binary wind and its orbit (the
  synthetic data set of :mod:`coemu.hydro.synthetic` and the fit's forward
  model, :mod:`coemu.fit.forward`);
* :mod:`~coemu.physics.viewing`: inclination, position angle and azimuth as a
  rotation into the cube frame (:mod:`coemu.observe.viewing`, the fit);
* :mod:`~coemu.physics.units`: specific intensity to Jy/pixel, Jy/beam and K,
  and the beam's kernel (:mod:`coemu.observe.fits`, the fit).

Each function takes torch tensors (CPU or CUDA; float64 where the results are
compared to 1e-6 and better) and keeps autograd; numpy callers convert at the
edge (``torch.from_numpy`` in, ``.numpy()`` out). Scalar parameters may be
Python floats or 0-d tensors (:func:`~coemu.physics.tensor.as_tensor`).
"""
