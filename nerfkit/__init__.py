"""nerfkit: photos of a scene in, a 3D model you can look at, measure and use out."""

__version__ = "0.1.0"
