"""The exported functions: pixels in, L2-normalized float32 embeddings out, preprocessing inside.

| signature | inputs | outputs |
|---|---|---|
| `serving_default` | `images` float32 `(batch, H, W, 3)`, RGB, 0..255 | `embedding` float32 `(batch, D)` |
| `embed_jpeg` | `images` string `(batch,)`: encoded JPEG/PNG crops | `embedding` float32 `(batch, D)` |
| `verify` | `images_a`, `images_b` as `images`; `threshold` float32 `()` | `score` float32 `(batch,)`, `same` bool |

`verify`: `score` is the cosine, `same = score > threshold`; `threshold` may be omitted when the export
stores one (a SignatureDef default). `D` is the network's embedding size, `2 * dim` with `"concat"` flip fusion.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import tensorflow as tf

from keras_sphereface.data.dataset import decode_image_tf
from keras_sphereface.export.resolve import ResolvedModel
from keras_sphereface.inference.contract import FLIP_FUSIONS

if TYPE_CHECKING:
    import keras

SERVING_DEFAULT = "serving_default"
EMBED_JPEG = "embed_jpeg"
VERIFY = "verify"
#: Signature names, in the order they are registered.
SIGNATURE_NAMES = (SERVING_DEFAULT, EMBED_JPEG, VERIFY)


class ServingFunctions:
    """Builds the exported functions around an embedding network.

    Args:
        resolved: `ResolvedModel`. The network, its name and its preprocessing key.
        flip_fusion: str. `"none"`, `"concat"` or `"sum"` (see `keras_sphereface.inference.contract.FLIP_FUSIONS`).
        threshold: float or None. Stored verification threshold: the default of `verify`'s `threshold`
            input; None makes that input required.
    """

    def __init__(self, resolved: ResolvedModel, flip_fusion: str = "none", threshold: float | None = None):
        from keras_sphereface.models.folding import fold_batch_norms
        from keras_sphereface.models.preprocessing import get_preprocessing

        if flip_fusion not in FLIP_FUSIONS:
            raise ValueError(f"flip_fusion must be one of {list(FLIP_FUSIONS)}. Received: flip_fusion={flip_fusion!r}")
        self.resolved = resolved
        # Served folded: each BatchNormalization after a convolution is part of its kernel and bias.
        self.model = fold_batch_norms(resolved.model)
        self.flip_fusion = flip_fusion
        self.threshold = threshold
        self.height, self.width = resolved.input_size
        self._preprocess = get_preprocessing(resolved.preprocessing)

    @property
    def embedding_dim(self) -> int:
        """int. Length `D` of the exported embedding."""
        return self.resolved.embedding_dim * (2 if self.flip_fusion == "concat" else 1)

    def image_spec(self, name: str) -> tf.TensorSpec:
        """`tf.TensorSpec` of a float32 image batch `(None, H, W, 3)` called `name`."""
        return tf.TensorSpec((None, self.height, self.width, 3), tf.float32, name=name)

    def _network(self, images: tf.Tensor) -> tf.Tensor:
        # Mixed-precision networks return float16: the export always returns float32.
        return tf.cast(self.model(self._preprocess(images), training=False), tf.float32)

    def embed(self, images: tf.Tensor) -> tf.Tensor:
        """float32 `(batch, H, W, 3)` pixels 0..255 -> L2-normalized float32 `(batch, D)`."""
        images = tf.cast(images, tf.float32)
        features = self._network(images)
        if self.flip_fusion != "none":
            mirrored = self._network(tf.reverse(images, axis=[2]))
            concat = self.flip_fusion == "concat"
            features = tf.concat([features, mirrored], axis=1) if concat else features + mirrored
        return tf.math.l2_normalize(features, axis=1, epsilon=1e-12)

    def serving_default(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        """The `serving_default` signature: `{"embedding": (batch, D)}`."""
        return {"embedding": self.embed(images)}

    def decode(self, images: tf.Tensor) -> tf.Tensor:
        """Decodes a `(batch,)` string tensor of JPEG/PNG crops to float32 `(batch, H, W, 3)`.

        A crop of another size fails with an `InvalidArgumentError` naming the expected size.
        """
        height, width = self.height, self.width

        def decode_one(data):
            image = decode_image_tf(data)  # bit-identical to OpenCV's decoding, as the evaluation crops
            size_ok = tf.reduce_all(tf.equal(tf.shape(image)[:2], [height, width]))
            message = f"embed_jpeg takes aligned crops of {height}x{width} (height x width) pixels; received"
            check = tf.debugging.Assert(size_ok, [message, tf.shape(image)[:2]])
            with tf.control_dependencies([check]):
                # The Assert raises; the cond only keeps later shape checks from failing first.
                image = tf.cond(size_ok, lambda: image, lambda: tf.zeros((height, width, 3), image.dtype))
            return tf.ensure_shape(tf.cast(image, tf.float32), (height, width, 3))

        return tf.map_fn(
            decode_one, images, fn_output_signature=tf.TensorSpec((height, width, 3), tf.float32)
        )

    def embed_jpeg(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        """The `embed_jpeg` signature: encoded crops `(batch,)` -> `{"embedding": (batch, D)}`."""
        return {"embedding": self.embed(self.decode(images))}

    def verify_function(self) -> Callable[..., dict[str, tf.Tensor]]:
        """The `verify` function; its `threshold` argument defaults to the stored threshold (if any).

        A default that is a tensor is written into the SignatureDef's `defaults`, which TensorFlow's
        C++ input handling (used by TF Serving's Predict) applies when a request omits `threshold`.
        """

        def scores(images_a, images_b, threshold):
            score = tf.reduce_sum(self.embed(images_a) * self.embed(images_b), axis=1)
            return {"score": score, "same": score > threshold}

        if self.threshold is None:

            def verify(images_a, images_b, threshold):
                return scores(images_a, images_b, threshold)

        else:
            stored = tf.constant(float(self.threshold), tf.float32)

            def verify(images_a, images_b, threshold=stored):
                return scores(images_a, images_b, threshold)

        return verify

    def input_signatures(self) -> dict[str, list[tf.TensorSpec]]:
        """Signature name -> input `tf.TensorSpec` list, for `ExportArchive.add_endpoint`."""
        return {
            SERVING_DEFAULT: [self.image_spec("images")],
            EMBED_JPEG: [tf.TensorSpec((None,), tf.string, name="images")],
            VERIFY: [self.image_spec("images_a"), self.image_spec("images_b"),
                     tf.TensorSpec((), tf.float32, name="threshold")],
        }

    def functions(self) -> dict[str, Callable[..., dict[str, tf.Tensor]]]:
        """Signature name -> Python function, for `ExportArchive.add_endpoint`."""
        return {SERVING_DEFAULT: self.serving_default, EMBED_JPEG: self.embed_jpeg, VERIFY: self.verify_function()}

    def archive(self, signatures: Sequence[str] = SIGNATURE_NAMES) -> keras.export.ExportArchive:
        """A `keras.export.ExportArchive` tracking the network with the named signatures."""
        import keras

        archive = keras.export.ExportArchive()
        archive.track(self.model)
        specs, functions = self.input_signatures(), self.functions()
        for name in signatures:
            archive.add_endpoint(name, functions[name], input_signature=specs[name])
        return archive
