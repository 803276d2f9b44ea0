"""Exports of a trained scene to files other tools open (DESIGN.md, "Outputs").

- :mod:`nerfkit.export.splat_ply`: Gaussians to and from the standard 3DGS Gaussian .ply.
- :mod:`nerfkit.export.transform`: similarity transforms of Gaussians (SH rotation included), so
  exports land in the scene's original world coordinates.
- :mod:`nerfkit.export.splat_export`: ``nerfkit export splat``.
- :mod:`nerfkit.export.tsdf`: TSDF fusion of rendered depth and marching cubes, mesh clean-up and
  Chamfer / F-score (the building blocks of mesh export).
- :mod:`nerfkit.export.mesh_io`: meshes to and from .ply (vertex colours) and .obj (+ .mtl, texture).
"""
