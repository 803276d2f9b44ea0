"""Exports of a trained scene to files other tools open (DESIGN.md, "Outputs").

- :mod:`nerfkit.export.splat_ply`: Gaussians to and from the standard 3DGS Gaussian .ply.
"""
