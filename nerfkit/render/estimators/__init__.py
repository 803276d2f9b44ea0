"""Estimators: where along each ray a field is shaded, field-agnostic (as nerfacc's).

- :mod:`.occupancy`: instant-ngp's occupancy grid (ngp; mipnerf's ``occupancy`` sampler).
- :mod:`.proposal`: Mip-NeRF 360's proposal levels.
- :mod:`.coarse_to_fine`: Mip-NeRF's two passes of one field.
"""
