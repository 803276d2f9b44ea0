"""The live web viewer (viser), reachable as ``nerfkit.viewer`` (``nerfkit/viewer`` links here).

It knows only a render function (:data:`~nerfkit.viewer.types.RenderFn`: a
:class:`~nerfkit.viewer.types.ViewRequest` in, a :class:`~nerfkit.viewer.types.RenderResult` out)
and a stats object; it never imports ``nerfkit.methods``. ``nerfkit/serve.py`` adapts a trained
method to it. Importing this package does not import viser; :mod:`nerfkit.viewer.server` does.
"""

from nerfkit.viewer.types import (
                                  RENDER_MODES,
                                  RenderFn,
                                  RenderResult,
                                  StatsSource,
                                  TrainingControl,
                                  TrainingView,
                                  ViewRequest,
)

__all__ = ["RENDER_MODES", "RenderFn", "RenderResult", "StatsSource", "TrainingControl", "TrainingView",
           "ViewRequest"]
