"""The doors: checks on everything that comes from a user before qcore reads it, one idea per module.

:mod:`.limits` (the range of every number a user sets), :mod:`.safe_zip` (zip archives: the end record read
before the directory is parsed), :mod:`.safe_checkpoint` (checkpoint format from content, bounded before
``torch.load``), :mod:`.image_guard` (pixel limit from the header), :mod:`.folder_scan` (a bounded walk of a
class-per-folder tree), :mod:`.dataset_summary` (what a folder holds, and why it cannot be a dataset),
:mod:`.upload_quota` (upload records and the quota). Imports only :mod:`qcore.env`.
"""

__all__ = []
