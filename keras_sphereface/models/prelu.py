"""`PReLU`: `keras.layers.PReLU` with a training gradient of fewer passes over the activations.

Keras computes PReLU as `relu(x) - alpha * relu(-x)`: five element-wise ops forward and about as
many again backward, each a full pass over a `(batch, height, width, channels)` tensor when no
compiler fuses them (TensorFlow without XLA). Sphere-20 has 20 PReLUs on its largest feature
maps, and in a `mixed_bfloat16` training step, where the convolutions run on bf16 matrix units,
those passes were 43% of the step (`docs/performance.md`). In training this layer computes the
local slope `d = where(x > 0, 1, alpha)` once and writes the gradients out:

    y        = x * d
    d/dx     = g * d
    d/dalpha = sum of g * min(x, 0) over the batch and the shared axes

three passes forward and four backward (about 30% fewer than `where(x > 0, x, alpha * x)` with
`where` in the gradient too, which this layer used before; `docs/performance.md`).
The values are the same as Keras' (both are exact in floating point: `x * 1 == x`,
`-alpha * -x == alpha * x`),
and so are the gradients except at exactly `x = 0`, where this layer takes the slope's side as
Caffe's PReLU (and PyTorch's) do, and Keras' `relu` formula gives 0.
In inference (`training` false) it runs Keras' formula, which converters recognise (TFLite and
ONNX turn it into one `PRELU` op). Weights, config and checkpoints are those of
`keras.layers.PReLU` (one `alpha` per channel), so weights load either way.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_sphereface.utils.types import Tensor


@keras.saving.register_keras_serializable(package="keras_sphereface")
class PReLU(keras.layers.PReLU):
    """`keras.layers.PReLU` (same arguments, weights and outputs) with a cheaper training gradient.

    Input: a tensor of any rank >= 2, e.g. `(batch, height, width, channels)` feature maps;
    `alpha` has the input's shape without the batch axis, with size 1 on `shared_axes`.
    Output: the same shape and dtype.
    """

    def call(self, inputs: Tensor, training: bool | None = None) -> Tensor:
        """`max(0, x) + alpha * min(0, x)` per element; the custom gradient when `training`.

        Args:
            inputs: tensor, e.g. `(batch, height, width, channels)`.
            training: bool or None. True: the written-out gradient above; else Keras' formula.

        Returns:
            Tensor of the shape and dtype of `inputs`.
        """
        if not training:
            return super().call(inputs)
        inputs = ops.convert_to_tensor(inputs)
        alpha = ops.cast(self.alpha, inputs.dtype)
        # The batch axis and the axes of alpha that broadcast (size 1) over a larger input axis:
        # alpha's gradient sums over them.
        summed = (0, *(i + 1 for i, size in enumerate(alpha.shape) if size == 1 and inputs.shape[i + 1] != 1))

        @ops.custom_gradient
        def forward(x, slope):
            local_slope = ops.where(x > 0, ops.ones_like(slope), slope)

            def grad(*args, upstream=None):
                if upstream is None:
                    (upstream,) = args
                grad_slope = ops.sum(upstream * ops.minimum(x, 0), axis=summed, keepdims=True)
                return upstream * local_slope, ops.reshape(grad_slope, slope.shape)

            return x * local_slope, grad

        return forward(inputs, alpha)
