"""Densification strategies for 3D Gaussian splatting: when to add, split, move and remove Gaussians
(as gsplat's ``strategy`` package: an options dataclass, explicit state, one hook after backward).

Per training step the splat method calls ``strategy.step_post_backward(params, optimizer, step,
info)`` after ``loss.backward()`` and before ``optimizer.step()``; ``step`` is the 0-based step
just done. Rows of the Gaussians and their Adam moments are edited together (:mod:`.rows`).

Modules: :mod:`.base` (the :class:`~.base.Strategy` protocol and ``make_strategy``), :mod:`.default`,
:mod:`.mcmc`, :mod:`.options` (their settings; light to import, no torch).

Schedules (``refine_start`` = a, ``refine_stop`` = b, ``refine_every`` = r, ``reset_every`` = t):

- statistics accumulate on every step ``< b`` (default);
- refinement runs when ``a < step < b`` and ``step % r == 0`` (both strategies);
- the opacity reset (default) runs when ``0 < step < b`` and ``step % t == 0``, after refinement of
  the same step, as 3DGS and gsplat do (no resets once densification has stopped; none when
  t <= 0, and then no size pruning either);
- MCMC position noise runs on every step, also after ``b``.
"""
