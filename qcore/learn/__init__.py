"""Learn: quantization watched on a real tensor of a loaded model (the Learn page's library).

One idea per module, each computing with qcore's own primitives and observers (the code the
sweeps run), so that what the page teaches is what the sweeps measure:

- :mod:`~qcore.learn.source`: the model with its weights and the dataset's real images (the
  sweeps' loading path; never trains a missing baseline);
- :mod:`~qcore.learn.capture`: a layer's weights, or its input activations captured with a
  forward pre-hook on a few calibration batches;
- :mod:`~qcore.learn.ranges`: the clipping range each calibration method picks on that tensor;
- :mod:`~qcore.learn.affine`: the staircase, scale and zero point as numbers and as the formula,
  the error split into rounding and clipping, SQNR, wasted codes;
- :mod:`~qcore.learn.granularity`: per-tensor against per-channel and per-group, and the bits
  spent on scales;
- :mod:`~qcore.learn.dynamic`: a static range against the per-batch ranges of dynamic quantization;
- :mod:`~qcore.learn.setting` and :mod:`~qcore.learn.one_layer`: one layer quantized as shown and
  the model measured with it (a background job; fake-quantized in float, so simulated);
- :mod:`~qcore.learn.words`: the sentences next to each chart, with the chart's numbers.

Nothing here imports streamlit or plotly.
"""

__all__ = []
