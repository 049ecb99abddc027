"""Recipes, the config dataclass, head names and the learning-rate schedule (no training)."""

from __future__ import annotations

import dataclasses
import re

import pytest
import tomllib

from keras_sphereface.layers import ArcFace, CosFace, MarginInnerProduct
from keras_sphereface.models.zoo import MODEL_NAMES
from keras_sphereface.training import (
    HEAD_NAMES,
    HEAD_SHARDINGS,
    PRECISIONS,
    RECIPE_NAMES,
    STRATEGIES,
    TrainConfig,
    config_to_toml,
    learning_rate_at,
    load_recipe,
    make_head,
    recipe_path,
)


def test_base_recipe_equals_the_dataclass_defaults():
    assert load_recipe(None) == TrainConfig()


@pytest.mark.parametrize("name", RECIPE_NAMES)
def test_every_shipped_recipe_loads_with_zoo_model_and_known_head(name):
    assert re.fullmatch(r"[a-z0-9-]+_[a-z0-9]+_[a-z0-9-]+", name), name
    config = load_recipe(name, tfrecords="x-*.tfrecord")
    config.validate()
    assert config.model in MODEL_NAMES
    assert config.head in HEAD_NAMES
    make_head(config.head, 10, config.head_options)  # the options fit the head
    assert config.description


def test_required_recipes_are_shipped():
    shipped = set(RECIPE_NAMES)
    assert {"casia_sphere20_asoftmax", "lfw-devtrain_sphere4_asoftmax"} <= shipped
    for backbone in ("mobilefacenet", "iresnet50"):
        for loss in ("arcface", "cosface"):
            assert any(n.endswith(f"_{backbone}_{loss}") for n in shipped), (backbone, loss)


def test_casia_recipe_is_the_paper_recipe():
    config = load_recipe("casia_sphere20_asoftmax")
    assert (config.model, config.head, config.batch_size, config.steps) == ("sphere20", "a-softmax", 256, 28000)
    assert config.head_options == {"m": 4, "base": 1000.0, "gamma": 0.12, "power": 1.0, "lambda_min": 5.0}
    assert (config.lr, config.momentum, config.weight_decay) == (0.1, 0.9, 5e-4)
    assert config.lr_boundaries == [16000, 24000] and config.flip
    assert (config.weight_decay_on, config.bias_lr_mult) == ("kernels", 2.0)
    # Caffe multistep: 0.1 until iteration 15999, 0.01 from 16000, 0.001 from 24000.
    rates = [learning_rate_at(s, config) for s in (0, 15999, 16000, 23999, 24000, 27999)]
    assert rates == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_overrides_and_derived_recipe():
    config = load_recipe("lfw-devtrain_sphere4_cosface", steps=5, lr=0.5, head=None)
    assert (config.head, config.steps, config.epochs, config.lr) == ("cosface", 5, None, 0.5)
    assert config.batch_size == load_recipe("lfw-devtrain_sphere4_asoftmax").batch_size
    assert isinstance(make_head(config.head, 3, config.head_options), CosFace)


def test_polynomial_schedule_and_warmup():
    config = TrainConfig(lr=0.1, lr_schedule="polynomial", lr_power=2.0, steps=100, warmup_steps=10)
    assert learning_rate_at(0, config) == pytest.approx(0.01)
    assert learning_rate_at(9, config) == pytest.approx(0.1)
    assert learning_rate_at(10, config) == pytest.approx(0.1)
    assert learning_rate_at(55, config) == pytest.approx(0.1 * 0.5**2)


def test_resolved_config_round_trips_through_toml(tmp_path):
    config = load_recipe("casia_sphere20_asoftmax", tfrecords="a/train-*.tfrecord", seed=3, tag="mine",
                         validate_pairs="p.txt", validate_data="d")
    path = tmp_path / "config.toml"
    path.write_text(config_to_toml(config, "a header\nline two"))
    assert tomllib.loads(path.read_text())["seed"] == 3
    assert load_recipe(path) == config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"precision": "float8"}, "precision"),
        ({"strategy": "tpu"}, "strategy"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr_boundaries": [10, 5]}, "lr_boundaries"),
        ({"on_nan": "ignore"}, "on_nan"),
        ({"jit_compile": "yes"}, "jit_compile"),
        ({"validate_pairs": "p.txt"}, "validate_data"),
        ({"random_crop": 1.0}, "random_crop"),
        ({"random_erase": 1.5}, "random_erase"),
        ({"contrast": -0.1}, "contrast"),
        ({"brightness": float("nan")}, "brightness"),
        ({"nonsense": 1}, "nonsense"),
    ],
)
def test_bad_options_name_the_option(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_recipe("lfw-devtrain_sphere4_asoftmax", **overrides)


def test_steps_and_epochs_exclude_each_other():
    with pytest.raises(ValueError, match="not both"):
        TrainConfig(steps=3, epochs=1.0)
    with pytest.raises(ValueError, match="steps` or `epochs"):
        TrainConfig(tfrecords="x").validate()


def test_unknown_recipe_and_bad_recipe_key(tmp_path):
    with pytest.raises(ValueError, match="lfw-devtrain_sphere4_asoftmax"):
        recipe_path("no_such_recipe")
    bad = tmp_path / "bad.toml"
    bad.write_text('base = "lfw-devtrain_sphere4_asoftmax"\nlearning_rate = 0.1\n')
    with pytest.raises(ValueError, match="learning_rate"):
        load_recipe(bad)


def test_heads_by_name():
    assert isinstance(make_head("a-softmax", 5, {"m": 4}), MarginInnerProduct)
    assert isinstance(make_head("arcface", 5), ArcFace)
    with pytest.raises(ValueError, match="a-softmax"):
        make_head("softmax", 5)
    with pytest.raises(ValueError, match="head_options"):
        make_head("arcface", 5, {"margin": 0.5})


def test_cli_choices_match_the_library():
    from ksf import train as cli_train

    choices = {param.name: tuple(param.type.choices) for param in cli_train.train.params
               if hasattr(param.type, "choices")}
    assert choices["precision"] == PRECISIONS
    assert choices["strategy"] == STRATEGIES
    assert choices["head_sharding"] == HEAD_SHARDINGS
    assert choices["head"] == HEAD_NAMES


def test_config_fields_are_documented():
    doc = TrainConfig.__doc__
    missing = [f.name for f in dataclasses.fields(TrainConfig) if f"{f.name}:" not in doc]
    assert not missing


def test_training_imports_only_public_evaluation_and_no_cli():
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[2] / "keras_sphereface" / "training"
    offenders = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.startswith("keras_sphereface.evaluation.") or name.split(".")[0] in ("ksf", "cli"):
                    offenders.append(f"{path.name}: {name}")
    assert not offenders


def test_a_recipe_stating_steps_replaces_its_bases_epochs(tmp_path):
    (tmp_path / "by_steps.toml").write_text('base = "lfw-devtrain_sphere4_asoftmax"\nsteps = 300\n', encoding="utf-8")
    config = load_recipe(tmp_path / "by_steps.toml")
    assert (config.steps, config.epochs) == (300, None)
    (tmp_path / "by_epochs.toml").write_text(f'base = "{tmp_path / "by_steps.toml"}"\nepochs = 2\n', encoding="utf-8")
    config = load_recipe(tmp_path / "by_epochs.toml")
    assert (config.steps, config.epochs) == (None, 2)
