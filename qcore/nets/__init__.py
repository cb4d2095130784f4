"""The FP32 network: its architecture, where its weights come from, and the baselines qcore trains.

:mod:`.models` (the torchvision registry, a sized head, input sizes), :mod:`.weights` (pretrained,
checkpoint or baseline), :mod:`.train` (baselines, the shipped one), :mod:`.fastconv` (the exact dense path
for convolutions over tiny maps), :mod:`.baseline_lock` (one trainer per baseline), :mod:`.checkpoint_fit`
(a checkpoint against a model, on the meta device). Imports the packages below it: env, guards, quant, data,
metrics.
"""

__all__ = []
