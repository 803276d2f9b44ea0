"""Exports of a trained method to files other tools open, always in the scene's ORIGINAL world
coordinates (docs/design.md, "Conventions"). Each entry point takes objects (a method, its scene,
options) and returns a result with a ``write(path)``:

- :func:`nerfkit.export.mesh.export_mesh`: TSDF fusion of rendered depth -> a coloured mesh
  (.ply / .obj, optionally textured).
- :func:`nerfkit.export.pointcloud.export_pointcloud`: points on the rendered depth, or the centres
  of the Gaussians.
- :func:`nerfkit.export.gaussians.export_splat`: the Gaussians for the standard 3DGS .ply.

Building blocks: :mod:`.tsdf` (fusion, marching cubes, Chamfer / F-score), :mod:`.holes`,
:mod:`.simplify`, :mod:`.texture`, :mod:`.mesh_io` and :mod:`.splat_ply` (the file formats),
:mod:`.transform` (Gaussians under a similarity), :mod:`.views` (views rendered for export).
"""
