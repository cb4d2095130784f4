"""What runs beside the app: the background worker and the jobs it serves.

:mod:`.worker` (runs every kind of job, one runner per kind), :mod:`.retime` ("time again": timing only),
:mod:`.uploads` (uploaded checkpoints and zips, checked by the guards, kept under the quota). Imports
:mod:`qcore.runs`, :mod:`qcore.cluster` and what is below them.
"""

__all__ = []
