"""The distributed mode: mandi's services as separate processes connected by Redis.

``mandi service NAME`` runs one of them (see :data:`SERVICES`), ``mandi up`` / ``mandi down`` a
whole local deployment (:mod:`.supervisor`). Each service is the same kernel code as
``mandi run`` behind a Redis bridge (:mod:`mandi.bus.redis`) and exposes ``/metrics``
(Prometheus), ``/health`` and ``/ready`` (:mod:`.health`). See ``docs/distributed.md``.
"""

from __future__ import annotations

#: service name -> the ``[services]`` key of its metrics/health port
SERVICES: dict[str, str] = {
    "tickserver": "tickserver_metrics_port",
    "mdengine": "mdengine_port",
    "mdengine-sim": "mdengine_sim_port",
    "indengine": "indengine_port",
    "strategy": "strategy_port",
    "gateway": "gateway_port",
}
