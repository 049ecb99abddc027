"""MarginInnerProduct against an independent NumPy implementation of the Caffe layer."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from keras_sphereface.layers import MarginInnerProduct
from tests.layers._backend import gradients, keeps_float64, numpy

RNG = np.random.default_rng(7)


def reference_psi(cos_theta: np.ndarray, m: int) -> np.ndarray:
    theta = np.arccos(np.clip(cos_theta, -1.0, 1.0))
    k = np.minimum(np.floor(theta * m / math.pi), m - 1)
    return (-1.0) ** k * np.cos(m * theta) - 2.0 * k


def reference_logits(x, w, labels, m, iteration, base=1000.0, gamma=0.12, power=1.0, lambda_min=5.0):
    """The Caffe forward pass, one sample at a time, in float64."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    w_unit = w / np.linalg.norm(w, axis=0, keepdims=True)
    out = x @ w_unit
    if m == 1:
        return out
    lam = max(lambda_min, base * (1.0 + gamma * iteration) ** (-power))
    for i, y in enumerate(labels):
        norm = np.linalg.norm(x[i])
        cos_theta = out[i, y] / norm
        out[i, y] = (lam * out[i, y] + norm * reference_psi(cos_theta, m)) / (1.0 + lam)
    return out


def reference_caffe_backward(x, w, labels, m, lam, upstream):
    """Caffe's Backward_cpu: input gradient with unit-norm coefficients, weight gradient x^T g."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    w_unit = w / np.linalg.norm(w, axis=0, keepdims=True)
    dx = np.zeros_like(x)
    for i, y in enumerate(labels):
        norm = np.linalg.norm(x[i])
        for j in range(w.shape[1]):
            if j != y or m == 1:
                dx[i] += upstream[i, j] * w_unit[:, j]
                continue
            c = x[i] @ w_unit[:, j] / norm
            theta = np.arccos(np.clip(c, -1, 1))
            k = np.minimum(np.floor(theta * m / math.pi), m - 1)
            # d psi / d cos via d/dtheta: psi = (-1)^k cos(m theta) - 2k.
            dpsi_dc = (-1.0) ** k * m * np.sin(m * theta) / np.sin(theta)
            psi = reference_psi(np.array(c), m)
            coeff_w, coeff_x = dpsi_dc, (psi - c * dpsi_dc) / norm
            scale = math.hypot(coeff_w, coeff_x)
            coeff_w, coeff_x = coeff_w / scale, coeff_x / scale
            dx[i] += upstream[i, j] * ((lam + coeff_w) * w_unit[:, j] + coeff_x * x[i]) / (1.0 + lam)
    return dx, x.T @ upstream


def _inputs(batch=6, dim=5, units=7):
    x = RNG.normal(size=(batch, dim)).astype(np.float32) * 3.0
    w = RNG.normal(size=(dim, units)).astype(np.float32)
    labels = RNG.integers(0, units, size=batch)
    return x, w, labels


def _layer(w, **kwargs):
    layer = MarginInnerProduct(w.shape[1], **kwargs)
    layer.build([(None, w.shape[0]), (None,)])
    layer.kernel.assign(w)
    return layer


@pytest.mark.parametrize("m", [1, 2, 3, 4])
@pytest.mark.parametrize("start", [0, 9, 999, 5000])
def test_logits_match_numpy_caffe_reference(m, start):
    x, w, labels = _inputs()
    layer = _layer(w, m=m, iteration=start)
    got = numpy(layer([x, labels], training=True))
    expected = reference_logits(x, w, labels, m, iteration=start + 1)
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-4)
    assert got.dtype == np.float32 and got.shape == (6, 7)


def test_several_consecutive_iterations_follow_the_schedule():
    x, w, labels = _inputs()
    layer = _layer(w, m=4)
    for step in range(1, 4):
        got = numpy(layer([x, labels], training=True))
        np.testing.assert_allclose(got, reference_logits(x, w, labels, 4, step), rtol=2e-5, atol=2e-4)
        assert int(numpy(layer.iteration)) == step


def test_lambda_values_with_caffe_defaults():
    x, w, labels = _inputs()
    layer = _layer(w)
    layer([x, labels], training=True)
    assert float(layer.current_lambda) == pytest.approx(892.857142, rel=1e-6)
    layer.iteration.assign(999)
    layer([x, labels], training=True)
    assert float(layer.current_lambda) == pytest.approx(8.264462, rel=1e-6)
    layer.iteration.assign(1658)
    layer([x, labels], training=True)
    assert int(numpy(layer.iteration)) == 1659 and float(layer.current_lambda) == 5.0
    assert layer.lambda_at(1658) > 5.0


def test_inference_is_margin_free_and_does_not_advance():
    x, w, labels = _inputs()
    layer = _layer(w, m=4)
    w_unit = w / np.linalg.norm(w, axis=0, keepdims=True)
    for out in (layer([x, labels], training=False), layer([x]), layer(x)):
        np.testing.assert_allclose(numpy(out), x @ w_unit, rtol=1e-5, atol=1e-5)
    assert int(numpy(layer.iteration)) == 0


def test_margin_lowers_only_the_target_logit():
    x, w, labels = _inputs(batch=32)
    layer = _layer(w, m=4, iteration=10**5)  # lambda = lambda_min
    margin = numpy(layer([x, labels], training=True))
    plain = numpy(layer([x, labels], training=False))
    target = np.zeros_like(plain, dtype=bool)
    target[np.arange(len(labels)), labels] = True
    assert np.all(margin[target] <= plain[target] + 1e-5)
    np.testing.assert_allclose(margin[~target], plain[~target], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_gradients_finite_at_cosine_plus_minus_one_and_zero_row(m):
    w = RNG.normal(size=(4, 3)).astype(np.float32)
    w_unit = w / np.linalg.norm(w, axis=0, keepdims=True)
    x = np.stack([2.0 * w_unit[:, 0], -3.0 * w_unit[:, 1], np.zeros(4)]).astype(np.float32)
    labels = np.array([0, 1, 2])
    for caffe_backward in (False, True):
        layer = _layer(w, m=m, caffe_backward=caffe_backward)
        column = labels[:, None]
        from keras_sphereface.layers import margin_inner_product as mip

        lam = keras.ops.convert_to_tensor(np.float32(layer.lambda_at(1)))
        fn = mip.caffe_backward_logits if caffe_backward else mip.a_softmax_logits
        out = numpy(fn(x, w, column, lam, m))
        dx, dw = gradients(lambda a, b, fn=fn, column=column, lam=lam: fn(a, b, column, lam, m), x, w)
        assert np.all(np.isfinite(out)) and np.all(np.isfinite(dx)) and np.all(np.isfinite(dw))


@pytest.mark.parametrize("m", [2, 3, 4])
def test_exact_gradient_matches_finite_differences(m):
    from keras_sphereface.layers import margin_inner_product as mip

    x, w, labels = _inputs(batch=3, dim=4, units=5)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    column = labels[:, None]
    lam = 7.0
    upstream = RNG.normal(size=(3, 5))

    def loss(a, b):
        return keras.ops.multiply(mip.a_softmax_logits(a, b, column, lam, m), upstream)

    dx, _ = gradients(loss, x64, w64)
    precise = keeps_float64()
    h = 1e-6 if precise else 1e-3
    numeric = np.zeros_like(x64)
    for idx in np.ndindex(*x64.shape):
        step = np.zeros_like(x64)
        step[idx] = h
        numeric[idx] = (numpy(loss(x64 + step, w64)).sum() - numpy(loss(x64 - step, w64)).sum()) / (2 * h)
    np.testing.assert_allclose(dx, numeric, rtol=1e-4 if precise else 2e-2, atol=1e-6 if precise else 2e-3)


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_caffe_backward_matches_numpy_caffe_reference(m):
    from keras_sphereface.layers import margin_inner_product as mip

    x, w, labels = _inputs(batch=5, dim=6, units=4)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    upstream = RNG.normal(size=(5, 4))
    lam = 3.5
    column = labels[:, None]

    def exact_fn(a, b, *_):
        if m == 1:
            return mip.ops.matmul(a, mip.l2_normalize(b, 0))
        return mip.a_softmax_logits(a, b, column, lam, m)

    dx, dw = gradients(
        lambda a, b: keras.ops.multiply(mip.caffe_backward_logits(a, b, column, lam, m), upstream), x64, w64
    )
    ref_dx, ref_dw = reference_caffe_backward(x64, w64, labels, m, lam, upstream)
    tight = 1.0 if keeps_float64() else 1e4  # float32 arithmetic on some backends
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-6 * tight, atol=1e-8 * tight)
    np.testing.assert_allclose(dw, ref_dw, rtol=1e-9 * tight, atol=1e-9 * tight)
    # Same forward values as the exact-gradient path.
    np.testing.assert_allclose(
        numpy(mip.caffe_backward_logits(x64, w64, column, lam, m)),
        numpy(exact_fn(x64, w64)),
        rtol=1e-12 * tight, atol=1e-12 * tight * 100,
    )


def test_caffe_backward_layer_trains():
    x, _, labels = _inputs(batch=16, dim=8, units=4)
    inputs = [keras.Input((8,)), keras.Input((), dtype="int32")]
    head = MarginInnerProduct(4, m=4, caffe_backward=True)
    model = keras.Model(inputs, head(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit([x, labels], labels, batch_size=8, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert int(numpy(head.iteration)) == 4


def test_fit_advances_iteration_once_per_step():
    x, _, labels = _inputs(batch=24, dim=8, units=4)
    inputs = [keras.Input((8,)), keras.Input((), dtype="int32")]
    embeddings = keras.layers.Dense(8)(inputs[0])
    head = MarginInnerProduct(4, m=2, iteration=100)
    model = keras.Model(inputs, head([embeddings, inputs[1]]))
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit([x, labels], labels, batch_size=8, epochs=2, verbose=0)
    assert int(numpy(head.iteration)) == 106
    model.predict([x, labels], verbose=0)
    model.evaluate([x, labels], labels, verbose=0)
    assert int(numpy(head.iteration)) == 106


def test_save_and_load_keep_iteration_and_outputs(tmp_path):
    x, _, labels = _inputs(batch=8, dim=8, units=5)
    inputs = [keras.Input((8,)), keras.Input((), dtype="int32")]
    head = MarginInnerProduct(5, m=3, base=500.0, gamma=0.1, power=1.5, lambda_min=2.0)
    model = keras.Model(inputs, head(inputs))
    for _ in range(3):
        head([x, labels], training=True)
    path = tmp_path / "a_softmax.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    loaded_head = loaded.layers[-1]
    assert isinstance(loaded_head, MarginInnerProduct)
    assert int(numpy(loaded_head.iteration)) == 3
    assert (loaded_head.m, loaded_head.base, loaded_head.power) == (3, 500.0, 1.5)
    np.testing.assert_array_equal(numpy(loaded([x, labels])), numpy(model([x, labels])))
    # Training continues the schedule where it stopped.
    np.testing.assert_array_equal(
        numpy(loaded_head([x, labels], training=True)), numpy(head([x, labels], training=True))
    )
    assert int(numpy(loaded_head.iteration)) == 4


def test_config_round_trip_continues_annealing():
    x, w, labels = _inputs()
    layer = _layer(w, m=4)
    layer([x, labels], training=True)
    config = layer.get_config()
    assert config["iteration"] == 1 and config["m"] == 4
    clone = MarginInnerProduct.from_config(config)
    clone.build([(None, 5), (None,)])
    assert int(numpy(clone.iteration)) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"m": 0}, "`m` must be an integer in 1..4. Received: m=0"),
        ({"m": 5}, "Received: m=5"),
        ({"m": 2.0}, "Received: m=2.0"),
        ({"m": True}, "Received: m=True"),
        ({"base": -1.0}, "`base` must be a positive number. Received: base=-1.0"),
        ({"gamma": -0.1}, "Received: gamma=-0.1"),
        ({"iteration": -3}, "Received: iteration=-3"),
        ({"units": 0}, "`units` must be a positive integer. Received: units=0"),
    ],
)
def test_bad_arguments(kwargs, message):
    arguments = {"units": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        MarginInnerProduct(**arguments)


def test_bad_inputs():
    x, w, labels = _inputs(batch=4, dim=5, units=7)
    layer = _layer(w)
    with pytest.raises(ValueError, match=r"`labels` must be in \[0, 6\].*Received: a label of 7"):
        layer([x, np.array([0, 1, 2, 7])], training=True)
    with pytest.raises(ValueError, match="Received: a label of -1"):
        layer([x, np.array([0, -1, 2, 3])], training=True)
    with pytest.raises(ValueError, match=r"must have rank 2.*Received: embeddings shape=\(4, 5, 1\)"):
        layer([x[..., None], labels[:4]], training=True)
    with pytest.raises(ValueError, match=r"embedding_dim=5.*Received: embeddings shape=\(4, 3\)"):
        layer([x[:, :3], labels[:4]], training=True)
    with pytest.raises(ValueError, match=r"must be integer class ids.*Received: labels shape=\(4, 2\)"):
        layer([x, np.zeros((4, 2), "int32")], training=True)
    assert int(numpy(layer.iteration)) == 0  # nothing ran
