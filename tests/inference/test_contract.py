"""The preprocessing contract: JSON round trip, validation, reading an export, thresholds from eval reports."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from keras_sphereface.inference import contract as contract_module
from keras_sphereface.inference.contract import (
    Contract,
    ContractError,
    contract_path,
    is_export_dir,
    read_contract,
    resolve_export_dir,
    threshold_from_report,
    write_contract,
)


def _contract(**overrides) -> Contract:
    fields = {
        "model_name": "mobilefacenet", "embedding_dim": 128, "input_size": (112, 96), "threshold": 0.25,
        "threshold_protocol": "plain", "threshold_data": "LFW", "threshold_source": "report.json",
        "alignment_points": ((30.3, 51.7), (65.5, 51.5), (48.0, 71.7), (33.5, 92.4), (62.7, 92.2)),
        "signatures": ("serving_default", "embed_jpeg", "verify"), "keras_sphereface_version": "0.1",
    }
    fields.update(overrides)
    return Contract(**fields)


def test_json_round_trip():
    contract = _contract(flip_fusion="concat", threshold_accuracy=0.99)
    again = Contract.from_json(contract.to_json())
    assert again == contract
    assert json.loads(contract.to_json())["input_size"] == [112, 96]
    assert again.embedder_preprocess == "none"
    assert _contract(preprocessing_in_graph=False).embedder_preprocess == "ksf"


def test_unknown_keys_are_ignored_and_newer_versions_refused():
    data = _contract().to_dict()
    data["added_later"] = 1
    assert Contract.from_dict(data).model_name == "mobilefacenet"
    data["format_version"] = 99
    with pytest.raises(ContractError, match="newer than this keras_sphereface reads"):
        Contract.from_dict(data)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("embedding_dim", 0, "embedding_dim must be a positive integer"),
        ("input_size", (112,), "input_size must be"),
        ("flip_fusion", "mean", "flip_fusion must be one of"),
        ("threshold", 1.5, "threshold must be None or a cosine"),
        ("threshold", float("nan"), "threshold must be"),
        ("format", "pb", "format must be one of"),
        ("model_name", "", "model_name must be"),
    ],
)
def test_invalid_values_are_refused(field, value, match):
    with pytest.raises(ContractError, match=match):
        _contract(**{field: value})


def test_from_json_errors_name_the_source():
    with pytest.raises(ContractError, match=r"c\.json: not valid JSON"):
        Contract.from_json("{", source="c.json")
    with pytest.raises(ContractError, match=r"lacks \['embedding_dim', 'input_size'\]"):
        Contract.from_json('{"model_name": "x"}')
    with pytest.raises(ContractError, match="must be a JSON object"):
        Contract.from_json("[1]")


def test_write_and_read_through_the_export_layout(tmp_path):
    version = tmp_path / "exports" / "mobilefacenet" / "3"
    (version.parent / "1").mkdir(parents=True)
    written = write_contract(version, _contract())
    assert written == contract_path(version) == version / "assets.extra" / "ksf_contract.json"
    assert [p.name for p in written.parent.iterdir()] == ["ksf_contract.json"]  # no temporary left
    assert read_contract(version) == _contract()
    assert read_contract(version.parent) == _contract()  # base dir: highest version wins
    assert read_contract(written) == _contract()
    assert resolve_export_dir(version.parent) == version and is_export_dir(version.parent)


def test_missing_or_broken_contract_is_a_clear_error(tmp_path):
    saved_model = tmp_path / "other" / "1"
    saved_model.mkdir(parents=True)
    (saved_model / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ContractError, match="has no preprocessing contract"):
        read_contract(saved_model)
    with pytest.raises(FileNotFoundError, match="Export not found"):
        read_contract(tmp_path / "nowhere")
    with pytest.raises(ContractError, match="is not an export"):
        read_contract(tmp_path)
    assert not is_export_dir(tmp_path)
    contract_path(saved_model).parent.mkdir()
    contract_path(saved_model).write_text('{"model_name": "x", "embedding_dim": -1, "input_size": [1, 1]}')
    with pytest.raises(ContractError, match="embedding_dim must be a positive integer"):
        read_contract(saved_model)


def test_check_image_size_and_threshold_description():
    contract = _contract()
    contract.check_image_size((112, 96, 3))
    with pytest.raises(ContractError, match=r"is 150x150 .* aligned 112x96 crops"):
        contract.check_image_size((150, 150, 3), "face.jpg")
    text = contract.describe_threshold()
    assert "0.2500" in text and "protocol plain" in text and "LFW" in text
    assert "no threshold" in _contract(threshold=None, threshold_protocol=None).describe_threshold()


def test_threshold_from_an_eval_report(tmp_path):
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"protocol": "summed", "mean_threshold": 0.31, "mean_accuracy": 0.98,
                                  "dataset": "LFW View 2", "command": "ksf eval lfw --protocol summed"}))
    fields = threshold_from_report(report)
    assert fields == {"threshold": 0.31, "threshold_protocol": "summed", "threshold_data": "LFW View 2",
                      "threshold_accuracy": 0.98, "threshold_source": "ksf eval lfw --protocol summed"}
    assert _contract(**fields).threshold == 0.31
    report.write_text(json.dumps({"folds": []}))
    with pytest.raises(ContractError, match="not a `ksf eval` verification report"):
        threshold_from_report(report)


def test_contract_module_imports_neither_tensorflow_nor_keras():
    tree = ast.parse(Path(contract_module.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not {name for name in imported if name.split(".")[0] in ("tensorflow", "keras", "numpy")}
