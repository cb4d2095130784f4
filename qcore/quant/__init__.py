"""What a quantization is: the spec a user picks and the maths that carries it out, without a model.

:mod:`.spec` (QuantSpec, its rules, the grid), :mod:`.spec_keep` (layers kept in FP32 or INT8),
:mod:`.spec_text` (labels read back), :mod:`.primitives` (the affine maths, INT4 packing), :mod:`.observers`
(calibration methods), :mod:`.kl_search` (entropy's KL search). Imports nothing else from qcore.
"""

__all__ = []
