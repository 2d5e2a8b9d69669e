"""Constrained Schrodinger bridges: bounded domains, reflected SDEs, reflected diffusion priors, bridges."""

from .domains import Ball, Box, Domain, Polytope, SDFDomain, Simplex, flower, make_domain, regular_polygon
from .sde import apply_boundary, reflected_euler_maruyama
