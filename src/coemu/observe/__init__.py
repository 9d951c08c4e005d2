"""Synthetic observations: any viewing direction, FITS cubes with a correct WCS, beams, units, moments.

* :mod:`~coemu.observe.viewing`: inclination, position angle and azimuth as a
  rotation into the cube frame (inclination 0 = the cubes' rotation 0), and
  the convention against RADMC-3D's;
* :mod:`~coemu.observe.units`: Jy/pixel, Jy/beam (radio-beam kernels), K
  (Planck or Rayleigh-Jeans) and back;
* :mod:`~coemu.observe.fits`: the FITS spectral cube (astropy.wcs) and its
  moment maps (spectral-cube);
* :mod:`~coemu.observe.make`: ``coemu observe`` and the pipeline's export of
  the test models' images.
"""
