"""A sweep, from its settings to its rows in the database: the spine's middle.

:mod:`.sweep_config` (a sweep's settings, validated), :mod:`.sweep` (preparing, measuring each spec, the
run), :mod:`.progress` (a first C++ build named in the progress), :mod:`.estimate` (what a job will cost;
:mod:`.estimate_ptq` the post-training algorithms' share), :mod:`.store` (results and jobs in SQLite),
:mod:`.query` (the Runs page's filtered pages of them),
:mod:`.requests` (one job per request, stored results, the queue's
wait), :mod:`.auto_probe`, :mod:`.probe_measure` and :mod:`.auto_status` (``auto`` measuring which INT8 backend
is fastest here, on first use). Imports the backends, QAT and everything below them; never the
cluster, the service, the insight packages (learn, layers) or the presentation.
"""

__all__ = []
