"""Where qcore keeps things and what this machine can do: the leaves every other package may import.

:mod:`.paths` (the data folder, ``$QCORE_HOME``), :mod:`.hardware` (CPU model and flags, threads, GPU).
:mod:`.malloc` (glibc keeps freed memory where models are timed), :mod:`.gpu` (the GPU and its tensor-core
formats). Imports nothing else from qcore.
"""

__all__ = []
