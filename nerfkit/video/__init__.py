"""Camera paths and videos: keyframes in world coordinates (:mod:`.camera_path`) and the H.264
writer (:mod:`.writer`). The built-in orbit's defaults are here, so the command line's help needs
neither torch nor scipy."""

ORBIT_FRAMES = 120
"""Frames of one turn of the built-in orbit."""

ORBIT_FPS = 30
"""Frames per second of the built-in orbit."""
