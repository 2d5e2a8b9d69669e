"""Data: xarray/NetCDF datasets, generators, Lightning DataModules. Imports xarray/Lightning on use."""

from .netcdf import write_netcdf

__all__ = ["write_netcdf"]
