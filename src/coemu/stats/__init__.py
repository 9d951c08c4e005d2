"""Global statistics of the cube and image files on a Dask ``distributed`` cluster."""
