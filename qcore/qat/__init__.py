"""Quantization-aware training (``QuantSpec(mode="qat")``): a short fine-tune with fake quantization that wins
back what post-training quantization lost, measured against an FP32 model fine-tuned the same way.

- :mod:`.flows`: per backend, how a QAT spec becomes a trainable graph and then the backend's int8 model;
- :mod:`.finetune`: the schedule (from the baseline's recipe, scaled down) and the training loop, shared by the
  QAT model and its FP32 control;
- :mod:`.cache`: trained states on disk, keyed by everything that defines them;
- :mod:`.measure`: one QAT row of a sweep (PTQ, control and QAT accuracy, the recovered fraction).

Why a control: a QAT run also fine-tunes the model, so it can beat FP32 (NNCF's Tiny-ImageNet resnet18: FP32
55.52, PTQ 55.28, "QAT" 57.08). ``recovered = (QAT - PTQ) / (control - PTQ)``: with PTQ 84.0, control 89.0
and QAT 88.0 top-1, QAT won back (88 - 84) / (89 - 84) = 0.8 of what PTQ lost against the fine-tuned FP32.
"""

__all__ = []  # import the modules themselves (qcore.qat.measure, ...): each pulls in torch
