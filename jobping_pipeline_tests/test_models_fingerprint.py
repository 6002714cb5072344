"""A local model folder is named by its contents: replaced in place, it is another model."""

import shutil

from jobping_pipeline.models import export as model_export
from jobping_pipeline.models import ModelSpec, bundled_model_path
from jobping_pipeline.models.fingerprint import folder_fingerprint


def test_a_model_folder_replaced_in_place_gets_another_id_and_another_conversion(tmp_path):
    folder = tmp_path / "my-model"
    shutil.copytree(bundled_model_path(), folder)
    cache = tmp_path / "digests.json"
    spec = ModelSpec(name=str(folder))
    before_id, before_key = spec.model_id, model_export.conversion_key(folder, 256, "onnx", "none")
    assert before_id == f"{folder}#{folder_fingerprint(folder, cache)}"
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # a fine-tune saved over the old one: same names, same sizes
    weights.write_bytes(bytes(data))
    assert spec.model_id != before_id
    assert model_export.conversion_key(folder, 256, "onnx", "none") != before_key
    assert ModelSpec().model_id == "sentence-transformers/all-MiniLM-L6-v2", "the bundled model's id is its package's"


def test_digests_are_read_from_the_cache_while_size_and_mtime_are_unchanged(tmp_path, monkeypatch):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"\0" * 1000)
    cache = tmp_path / "digests.json"
    first = folder_fingerprint(folder, cache)
    opened = []
    real_open = type(folder).open
    monkeypatch.setattr(type(folder), "open", lambda self, *a, **k: opened.append(self) or real_open(self, *a, **k))
    assert folder_fingerprint(folder, cache) == first and folder / "weights.bin" not in opened
    (folder / "weights.bin").write_bytes(b"\1" * 1000)
    assert folder_fingerprint(folder, cache) != first and folder / "weights.bin" in opened
