"""The doctor: for one measured point, why it lost accuracy or speed, which fix to try first, and each fix as a spec
that can be measured as a move on the frontier.

- :mod:`.fix`: a suggested fix (:class:`~qcore.doctor.fix.Fix`) and a measured cause (:class:`~qcore.doctor.fix.Cause`).
- :mod:`.split`: weights or activations (AIMET QuantAnalyzer's split): the spec with only its weights quantized and
  with only its activations quantized.
- :mod:`.where`: which layers and activation quantizers cost the accuracy, from the Layers measurement, with their
  kind (depthwise, first conv, classifier, residual add ...).
- :mod:`.causes`: why there: the measured cause among a fixed list, each with its evidence and its fixes.
- :mod:`.expected`: the INT8-over-FP32 speed-up published for this CPU's instruction set, with sources.
- :mod:`.speed`: where the time goes (torch.profiler, ONNX Runtime's and OpenVINO's own profilers), and the speed
  fixes; :mod:`.events` puts profiled ops in categories, :mod:`.collect` reads each runtime's profiler,
  :mod:`.speed_causes` turns a profile and this machine's measurements into causes and fixes.
- :mod:`.diagnose`: all of it for one stored row (``python -m qcore doctor RUN_ID``, the app's "Why?" panel).

It stands above :mod:`qcore.layers` (it reads the Layers measurement) and below :mod:`qcore.present`.
"""

__all__ = []  # import the modules themselves (qcore.doctor.diagnose, ...): most pull in torch
