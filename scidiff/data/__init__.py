"""Data: xarray/NetCDF datasets, normalisers and Lightning DataModules."""
