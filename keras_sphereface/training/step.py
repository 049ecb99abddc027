"""One global training step: forward and backward per replica, weight decay, loss scaling, the update.

One global step = one global batch: a `tf.function` takes one per-replica batch per local replica,
runs forward/backward under `strategy.run` (gradients are summed across replicas by the
optimizer), applies SGD with momentum and advances `global_step`. Heads compute in float32 under
any precision policy; the A-Softmax head's `iteration` variable advances once per global step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from keras_sphereface.layers.partial_fc import sampled_margin_logits
from keras_sphereface.training.config import TrainConfig
from keras_sphereface.training.distribute import Placement
from keras_sphereface.training.partial_fc import SampledCentres
from keras_sphereface.training.sharded_head import ShardedCentres

#: Variables that `weight_decay_on = "kernels"` decays (by their last name component).
DECAYED_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel")


def optimized_variables(model: keras.Model, sampled: bool = False) -> list:
    """The variables the optimizer updates: every trainable one, less the head's kernel under Partial FC.

    Args:
        model: keras.Model. The training model (its head is the layer named `"head"`).
        sampled: bool. Partial FC (`sample_rate < 1`): `SampledCentres` trains the centres instead.
            (A sharded head's centres are not the model's variables at all.)
    """
    kernel = getattr(model.get_layer("head"), "kernel", None)
    if not sampled or kernel is None:
        return list(model.trainable_variables)
    return [v for v in model.trainable_variables if v is not kernel]


def classify_variables(variables: list, decay_on: str) -> tuple[list, list[bool]]:
    """The variables that weight decay applies to, and for each one whether it is a bias.

    Args:
        variables: list. The optimized variables (`optimized_variables`).
        decay_on: str. `"kernels"` (the `DECAYED_NAMES`) or `"all"`.
    """
    decayed, bias = [], []
    for variable in variables:
        name = variable.name.split("/")[-1].split(":")[0]
        if decay_on == "all" or name in DECAYED_NAMES:
            decayed.append(variable)
        bias.append(name == "bias")
    return decayed, bias


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """SGD with momentum; wrapped in loss scaling under `mixed_float16` or `on_nan="skip"`.

    In float32 a scale of 1 (and its powers of two) leaves every figure unchanged; loss scaling
    is used there for its finite check, which skips the update.
    """
    optimizer = keras.optimizers.SGD(learning_rate=config.lr, momentum=config.momentum, nesterov=config.nesterov)
    if config.precision == "mixed_float16" or config.on_nan == "skip":
        optimizer = keras.optimizers.LossScaleOptimizer(
            optimizer, initial_scale=2.0**15 if config.precision == "mixed_float16" else 1.0)
    return optimizer


def loss_scale(optimizer: keras.optimizers.Optimizer) -> float | None:
    """The current dynamic loss scale, or None without loss scaling (it halves when an update is skipped)."""
    scale = getattr(optimizer, "dynamic_scale", None)
    return None if scale is None else float(np.asarray(scale))


def make_train_step(config: TrainConfig, model: keras.Model, optimizer: keras.optimizers.Optimizer,
                    global_step: tf.Variable, placement: Placement,
                    centres: SampledCentres | ShardedCentres | None = None) -> Callable:
    """The global step `(learning_rate, batches) -> (cross_entropy, correct)`.

    With a finite `clip_norm` the gradients are scaled by `min(1, clip_norm / |g|)`, `|g|` the
    global norm of the whole step's gradient (summed over replicas: one extra all-reduce when
    there are several), as `torch.nn.utils.clip_grad_norm_` does in insightface. Under loss
    scaling the limit is scaled alike, and a non-finite gradient stays non-finite (its update
    is skipped).

    Args:
        config: TrainConfig. Uses `weight_decay`, `weight_decay_on`, `bias_lr_mult`, `batch_size`,
            `clip_norm`, `jit_compile`.
        model: keras.Model `[images, labels] -> logits`, built under `placement.strategy`.
        optimizer: the optimizer of `make_optimizer`, built on `optimized_variables(model, centres is not None)`.
        global_step: tf.Variable (int64), advanced by one per call.
        placement: Placement.
        centres: SampledCentres or None. Partial FC: each step samples its centres (seeded by
            `global_step`), the logits cover them only, and `centres.apply_sgd` updates the sampled
            rows (with weight decay, the clipping of the whole gradient, and the skip of a
            non-finite one) while the optimizer updates the rest. One replica.
            Or ShardedCentres: the head's centres split across replicas; each replica computes its
            shard's part of the head (`ShardedCentres.step`), backpropagates its embeddings'
            gradient through the backbone, and updates its own centres alike.

    Returns:
        A function of a float32 scalar learning rate and a list of one `(images, labels)` batch per
        local replica; it returns the summed cross-entropy over replicas (already divided by the
        global batch: the mean loss) and the number of correct margin-logit argmaxes.
    """
    strategy = placement.strategy
    trainable = optimized_variables(model, centres is not None)
    decayed, is_bias = classify_variables(trainable, config.weight_decay_on)
    backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model)) if centres else None
    sharded = isinstance(centres, ShardedCentres)
    head = model.get_layer("head") if centres else None
    weight_decay = float(config.weight_decay)
    bias_mult = float(config.bias_lr_mult)
    global_batch = float(config.batch_size)
    first_replica = placement.worker_index * placement.local_replicas
    clip_norm = float(config.clip_norm)
    several = strategy.num_replicas_in_sync > 1

    def clip(grads, shard_grads=None):
        """`grads` (and a sharded head's own `shard_grads`) scaled to the clipped global norm."""
        context = tf.distribute.get_replica_context()
        whole = context.all_reduce(tf.distribute.ReduceOp.SUM, grads) if several else grads
        squared = tf.square(tf.linalg.global_norm(whole))
        if shard_grads is not None:  # each replica's centres are its own: their squares add up across replicas
            squared += context.all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(tf.square(shard_grads)))
        limit = clip_norm * tf.cast(optimizer.scale_loss(tf.constant(1.0)), tf.float32)
        factor = tf.minimum(1.0, limit / tf.sqrt(squared))
        scaled = [g * tf.cast(factor, g.dtype) for g in grads]
        return scaled if shard_grads is None else (scaled, shard_grads * factor)

    def regularization():
        """Weight decay and the model's own losses, per replica (the optimizer sums replicas)."""
        loss = tf.constant(0.0)
        if weight_decay and decayed:
            # Caffe/PyTorch weight decay `wd * w` in the gradient = `wd / 2 * |w|^2` in the loss.
            penalty = tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in decayed])
            loss += 0.5 * weight_decay * penalty / strategy.num_replicas_in_sync
        if model.losses:
            loss += tf.add_n(model.losses) / strategy.num_replicas_in_sync
        return loss

    def with_multiplier(grads):
        """`grads` of `trainable` with the biases' learning-rate multiplier."""
        return [g * bias_mult if bias else g for g, bias in zip(grads, is_bias, strict=True)] if bias_mult != 1.0 \
            else grads

    def compute_gradients(images, labels, rows=None, sampled_labels=None):
        with tf.GradientTape() as tape:
            if rows is None:
                logits = model([images, labels], training=True)
            else:  # Partial FC: the head's margin over the sampled centres, labels remapped into them
                tape.watch(rows)
                logits = sampled_margin_logits(head, backbone(images, training=True), rows, sampled_labels)
                labels = tf.reshape(sampled_labels, (-1,))
            logits = tf.cast(logits, tf.float32)
            per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            cross_entropy = tf.reduce_sum(per_example) / global_batch
            scaled = optimizer.scale_loss(cross_entropy + regularization())
        grads = tape.gradient(scaled, trainable if rows is None else [*trainable, rows])
        grads = with_multiplier(grads[:len(trainable)]) + grads[len(trainable):]
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32))
        return grads, cross_entropy, correct

    if config.jit_compile:
        # XLA compiles forward and backward into one program; the update stays outside it, where
        # the optimizer sums gradients across replicas.
        compute_gradients = tf.function(compute_gradients, jit_compile=True)

    def update_rows_if_finite(rows_grad, update_rows):
        """`update_rows()` (the centres' own SGD) unless `rows_grad` is not finite: skipped as loss scaling
        skips the optimizer's update."""
        def update():
            update_rows()
            return tf.constant(True)

        tf.cond(tf.reduce_all(tf.math.is_finite(rows_grad)), update, lambda: tf.constant(False))

    def sharded_replica_step(batch):
        images, labels = batch
        scale = tf.cast(optimizer.scale_loss(tf.constant(1.0)), tf.float32)
        with tf.GradientTape() as tape:
            embeddings = backbone(images, training=True)
            with tape.stop_recording():
                part = centres.step(embeddings, labels, global_step, scale)
            # The backbone's gradient: its embeddings' gradient (from every shard) pulled back, plus the regularization.
            objective = optimizer.scale_loss(regularization()) + tf.reduce_sum(
                tf.cast(embeddings, tf.float32) * part.d_embeddings)
        grads = with_multiplier(tape.gradient(objective, trainable))
        d_rows = part.d_rows
        if math.isfinite(clip_norm):
            grads, d_rows = clip(grads, d_rows)
        d_rows = d_rows / scale
        update_rows_if_finite(d_rows, lambda: centres.apply_sgd(
            part, d_rows, tf.cast(optimizer.learning_rate, tf.float32), config.momentum, weight_decay, config.nesterov))
        optimizer.apply_gradients(zip(grads, trainable, strict=True))
        return part.cross_entropy, part.correct

    def replica_step(batch):
        images, labels = batch
        if centres is None:
            grads, cross_entropy, correct = compute_gradients(images, labels)
        else:
            index, sampled_labels = centres.sample(labels, global_step)
            rows = centres.gather(index)
            grads, cross_entropy, correct = compute_gradients(images, labels, rows, sampled_labels)
        if math.isfinite(clip_norm):
            grads = clip(grads)
        if centres is not None:
            *grads, rows_grad = grads
            rows_grad = rows_grad / tf.cast(optimizer.scale_loss(tf.constant(1.0)), tf.float32)
            update_rows_if_finite(rows_grad, lambda: centres.apply_sgd(
                index, rows, rows_grad, tf.cast(optimizer.learning_rate, tf.float32), config.momentum, weight_decay,
                config.nesterov))
        optimizer.apply_gradients(zip(grads, trainable, strict=True))
        return cross_entropy, correct

    @tf.function
    def distributed_step(learning_rate, batches):
        optimizer.learning_rate.assign(learning_rate)
        values = strategy.experimental_distribute_values_from_function(
            lambda context: batches[context.replica_id_in_sync_group - first_replica])
        cross_entropy, correct = strategy.run(sharded_replica_step if sharded else replica_step, args=(values,))
        global_step.assign_add(1)
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, cross_entropy, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, correct, axis=None))

    return distributed_step
