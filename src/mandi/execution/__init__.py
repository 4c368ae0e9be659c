"""mandi.execution: from an allowed signal to orders, fills and exits.

The :class:`~mandi.execution.engine.ExecutionEngine` coordinates one stage per job —
:mod:`.entries` (a signal → :mod:`.plan` → risk → submit), :mod:`.exits`, :mod:`.fills`,
:mod:`.manual` — over a shared :class:`~mandi.execution.context.ExecutionContext`; the order router
(:mod:`.orders`), the paper broker (:mod:`.paper`) over the one fill simulator (:mod:`.matching`),
Indian charges (:mod:`.charges`), strike selection (:mod:`.strikes`) and the ports (:mod:`.ports`)
complete it. The trading kernel that wires it to strategies, signals, risk and the portfolio is
:mod:`mandi.system.kernel`.
"""
