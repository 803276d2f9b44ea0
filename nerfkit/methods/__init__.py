"""Methods, one file each (reading like its paper), behind the contract in :mod:`nerfkit.methods.base`.

:mod:`nerfkit.methods.registry` lists them; each method's settings live next to it
(``ngp_config.py`` beside ``ngp.py``).
"""

from nerfkit.methods.registry import METHODS, MethodSpec, build_method, method_spec

__all__ = ["METHODS", "MethodSpec", "build_method", "method_spec"]
