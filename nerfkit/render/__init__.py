"""Sampling and compositing shared by the ray-based methods."""
