"""A class-sharded margin head under `tf.distribute`: each replica holds its own slice of the class centres.

With `R` replicas over all workers, replica `r` holds the centres of classes `[start_r, stop_r)`
(`shard_bounds`: `classes // R` each, the first `classes % R` one more) and their SGD momentum, as
plain variables on its own device, never mirrored. Each step, on every replica (`ShardedCentres.step`):

1. the global batch's embeddings and labels are all-gathered (`ReplicaContext.all_gather`);
2. the head's margin logits are computed over the replica's centres: all of them, or with Partial
   FC a sample of them drawn per shard (every class of the global batch the shard holds, then
   uniform negatives, `sampled_count(shard classes, sample_rate, global batch)` in all). The margin
   falls on the targets the shard holds (a row whose class is elsewhere points at a spare column
   that is then dropped);
3. the softmax normalizer of every row over all shards: the row maximum (the shards' maxima
   all-gathered, then their maximum: tf.distribute reduces only SUM and MEAN), the sum of
   exponentials (all-reduce SUM), and the target logit (all-reduce SUM of the one shard holding it);
4. the logits' gradient `(softmax - onehot) / global batch` on the shard's columns gives the
   gradient of its centres and of the gathered embeddings; the latter is summed over replicas
   (all-reduce) and each replica takes its own rows' slice back through the backbone
   (`keras_sphereface.training.step`).

Every collective is tf.distribute's own (MirroredStrategy and MultiWorkerMirroredStrategy alike).
The centres are updated in place by `rows_sgd` (SGD with momentum as `keras.optimizers.SGD`), the
momentum of unsampled rows left as it is (`keras_sphereface.training.partial_fc`). At sample rate
1.0 the run equals the unsharded head's (tests/training/test_sharded_head.py).
"""

from __future__ import annotations

import dataclasses
import itertools

import keras
import tensorflow as tf

from keras_sphereface.layers.partial_fc import sample_classes, sampled_count, sampled_margin_logits
from keras_sphereface.training.centre_init import fill_centres
from keras_sphereface.training.centre_momentum import CentresMomentum
from keras_sphereface.training.distribute import Placement
from keras_sphereface.training.partial_fc import rows_sgd

#: Checkpoint key of the number of shards the centres were split into.
SHARDS_KEY = "head_shards/.ATTRIBUTES/VARIABLE_VALUE"


def shard_bounds(classes: int, replicas: int) -> list[tuple[int, int]]:
    """`[(start, stop), ...]` of each replica's classes: `classes // replicas`, the first `classes % replicas` one more.

    Raises:
        ValueError: fewer classes than replicas (a replica would hold none).
    """
    if classes < replicas:
        raise ValueError(f"A sharded head needs at least one class per replica. Received: {classes} classes on "
                         f"{replicas} replicas; use head_sharding='replicated'")
    size, extra = divmod(classes, replicas)
    starts = [r * size + min(r, extra) for r in range(replicas + 1)]
    return list(itertools.pairwise(starts))


@dataclasses.dataclass
class ShardStep:
    """What `ShardedCentres.step` gives one replica for its update.

    Attributes:
        d_embeddings: float32 `(local_batch, dim)`: the loss gradient of this replica's embeddings
            (times the loss scale), summed over every shard.
        index: int32 `(num_sampled,)` rows of this shard in the sample, or None (all rows).
        rows: float32 `(n, dim)`: those centres before the update.
        d_rows: float32 `(n, dim)`: the loss gradient of `rows` (times the loss scale).
        cross_entropy: float32 scalar: this replica's rows' summed cross-entropy / global batch.
        correct: float32 scalar: how many of this replica's rows have the target as the largest logit.
    """

    d_embeddings: tf.Tensor
    index: tf.Tensor | None
    rows: tf.Tensor
    d_rows: tf.Tensor
    cross_entropy: tf.Tensor
    correct: tf.Tensor


class ShardedCentres:
    """The class centres of a margin head split across the replicas of `placement`, and their momentum.

    Args:
        head: MarginHead built with `external_centres=True` (its margin, lambda and counters are used).
        classes: int. All classes.
        embedding_dim: int.
        placement: Placement. This process creates the shards of its own replicas, on their devices.
        sample_rate: float in (0, 1]. Partial FC's rate within each shard (1.0: every centre).
        global_batch: int. Images per step over all replicas.
        seed: int. Initial centres (`centre_init`) and each step's sample (seeded by `(seed, step)`,
            folded with the replica).
        momentum_storage: str. `"float32"` or `"int8"` (`keras_sphereface.training.centre_momentum`).

    Attributes:
        rows: list of float32 `tf.Variable`s `(shard classes, dim)`, one per local replica.
        momentum: list of their `CentresMomentum` (checkpoint `trackables()`).
        layout: int64 `tf.Variable`: the number of shards (checkpointed, checked on resume).
    """

    def __init__(self, head: keras.layers.Layer, classes: int, embedding_dim: int, placement: Placement,
                 sample_rate: float, global_batch: int, seed: int, momentum_storage: str = "float32"):
        self.head, self.classes, self.seed = head, int(classes), int(seed)
        self.bounds = shard_bounds(self.classes, placement.num_replicas)
        self.sampled = sample_rate < 1
        self.num_sampled = [sampled_count(stop - start, sample_rate, global_batch) for start, stop in self.bounds]
        self.global_batch = float(global_batch)
        self.first_replica = placement.worker_index * placement.local_replicas
        self.rows, self.momentum = [], []
        for local, device in enumerate(placement.strategy.extended.worker_devices):
            replica = self.first_replica + local
            start, stop = self.bounds[replica]
            with tf.device(device):
                rows = tf.Variable(tf.zeros((stop - start, embedding_dim), tf.float32), trainable=False,
                                   name=f"centres_{replica}")
                fill_centres(rows, self.seed, self.classes, start)
                self.rows.append(rows)
                self.momentum.append(CentresMomentum((stop - start, embedding_dim), momentum_storage,
                                                     name=f"centres_momentum_{replica}"))
        self.layout = tf.Variable(len(self.bounds), dtype=tf.int64, trainable=False, name="head_shards")

    def trackables(self) -> dict:
        """The objects a checkpoint keeps: this process's shards, their momentum, the layout."""
        return {"centres": list(self.rows), "centres_momentum": [m.trackable for m in self.momentum],
                "head_shards": self.layout}

    def _replica(self) -> tuple[tf.distribute.ReplicaContext, int]:
        context = tf.distribute.get_replica_context()
        replica = tf.get_static_value(context.replica_id_in_sync_group)
        if replica is None:
            raise ValueError("ShardedCentres.step runs in a replica context whose replica id is known when "
                             "tracing (MirroredStrategy, MultiWorkerMirroredStrategy)")
        return context, int(replica)

    def step(self, embeddings: tf.Tensor, labels: tf.Tensor, global_step: tf.Tensor, scale: tf.Tensor) -> ShardStep:
        """Forward and backward of the head for one replica (in `strategy.run`): see the module docstring.

        Args:
            embeddings: float `(local_batch, dim)`: this replica's backbone output.
            labels: int `(local_batch,)` or `(local_batch, 1)` class ids.
            global_step: int64 scalar: steps done (seeds the sample).
            scale: float32 scalar: the loss scale (1 without loss scaling).
        """
        context, replica = self._replica()
        local = replica - self.first_replica
        start, stop = self.bounds[replica]
        mine = tf.cast(tf.stop_gradient(embeddings), tf.float32)
        gathered = context.all_gather(mine, axis=0)
        all_labels = context.all_gather(tf.reshape(tf.cast(labels, tf.int32), (-1,)), axis=0)
        sizes = context.all_gather(tf.shape(mine)[:1], axis=0)
        offset, size = tf.reduce_sum(sizes[:replica]), sizes[replica]
        present = (all_labels >= start) & (all_labels < stop)
        shard_labels = tf.where(present, all_labels - start, 0)
        if self.sampled:
            seed = tf.random.experimental.stateless_fold_in(
                tf.stack([tf.constant(self.seed, tf.int64), tf.cast(global_step, tf.int64)]), replica)
            scores = tf.random.stateless_uniform([stop - start], seed=seed, dtype=tf.float32)
            index, column = sample_classes(shard_labels, scores, self.num_sampled[replica], present)
            rows = tf.gather(self.rows[local], index)
        else:
            index, column = None, tf.reshape(shard_labels, (-1, 1))
            rows = self.rows[local].read_value()
        width = int(rows.shape[0])
        target = tf.where(present[:, None], column, width)  # elsewhere: the spare column, dropped below
        with tf.GradientTape() as tape:
            tape.watch([gathered, rows])
            centres = tf.concat([rows, tf.stop_gradient(rows[:1])], axis=0)
            logits = tf.cast(sampled_margin_logits(self.head, gathered, centres, target), tf.float32)
        shard_logits = logits[:, :width]
        row_max = tf.reduce_max(context.all_gather(tf.reduce_max(shard_logits, axis=1)[None], axis=0), axis=0)
        exps = tf.exp(shard_logits - row_max[:, None])
        normalizer = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(exps, axis=1))
        own_target = tf.where(present, tf.gather(shard_logits, tf.minimum(column[:, 0], width - 1), batch_dims=1),
                              0.0)
        target_logit = context.all_reduce(tf.distribute.ReduceOp.SUM, own_target)
        per_row = tf.math.log(normalizer) + row_max - target_logit
        onehot = tf.one_hot(tf.where(present, column[:, 0], -1), width, dtype=tf.float32)
        d_logits = (exps / normalizer[:, None] - onehot) * (scale / self.global_batch)
        d_logits = tf.concat([d_logits, tf.zeros_like(d_logits[:, :1])], axis=1)
        d_gathered, d_rows = tape.gradient(logits, [gathered, rows], output_gradients=d_logits)
        d_gathered = context.all_reduce(tf.distribute.ReduceOp.SUM, d_gathered)
        correct = tf.cast(target_logit >= row_max, tf.float32)
        return ShardStep(d_embeddings=d_gathered[offset:offset + size], index=index, rows=rows, d_rows=d_rows,
                         cross_entropy=tf.reduce_sum(per_row[offset:offset + size]) / self.global_batch,
                         correct=tf.reduce_sum(correct[offset:offset + size]))

    def apply_sgd(self, part: ShardStep, d_rows: tf.Tensor, learning_rate: tf.Tensor, momentum: float,
                  weight_decay: float = 0.0, nesterov: bool = False) -> None:
        """Updates this replica's centres (the sampled rows, or all) and their momentum (in `strategy.run`)."""
        _, replica = self._replica()
        local = replica - self.first_replica
        rows_sgd(self.rows[local], self.momentum[local], part.index, part.rows, d_rows, learning_rate, momentum,
                 weight_decay, nesterov)


def check_shard_layout(reader: tf.train.CheckpointReader, path: str, replicas: int, sharded: bool) -> None:
    """Refuses to resume a checkpoint whose centres are laid out otherwise than this run's, saying how to resume.

    Args:
        reader: the checkpoint's reader.
        path: str. The checkpoint (named in the message).
        replicas: int. This run's replicas.
        sharded: bool. This run shards its head.

    Raises:
        ValueError: sharded over another number of replicas, or sharded against not sharded.
    """
    saved = int(reader.get_tensor(SHARDS_KEY)) if reader.has_tensor(SHARDS_KEY) else None
    if saved is not None and sharded and saved == replicas:
        return
    if saved is None and not sharded:
        return
    was = f"split over {saved} replicas" if saved else "held whole by every replica"
    now = f"splits them over {replicas}" if sharded else "holds them whole"
    how = (f"run it on {saved} replicas with head_sharding 'sharded' (or 'auto' under Partial FC)" if saved
           else "run it with head_sharding 'replicated' (or on the replica count it was written with)")
    raise ValueError(f"Checkpoint {path} keeps the head's class centres {was}; this run {now}. To resume, {how}; "
                     f"to start over instead, pass --no-resume (the checkpoints are replaced).")
