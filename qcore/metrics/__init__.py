"""What a number is and what it is worth: timing, accuracy and size measured, their intervals, the draws, the
frontier, and the Result row that carries them.

:mod:`.measure` (the only place that times anything; one prediction per image), :mod:`.artifact` (the
deployable artifact's bytes), :mod:`.stats` (95% intervals), :mod:`.scale` (a row's busy flag and intervals),
:mod:`.draws` (the mean and spread of calibration draws), :mod:`.pareto` (the frontier), :mod:`.result`
(a Result, its FP32 row), :mod:`.columns` (every column's name, unit and meaning), :mod:`.budget` (the point to
ship under a latency and an accuracy budget).
Imports :mod:`qcore.env` and :mod:`qcore.quant` only.
"""

__all__ = []
