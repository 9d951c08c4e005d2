"""Geometry: sphere trimming, rotations on SO(3), regridding to the cube."""
