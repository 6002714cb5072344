"""JOBPING_BACKEND and JOBPING_QUANTIZATION: converted models give the model's own vectors (or,
quantized, a model id of their own), start without torch, are converted once and cached, and bad
combinations are refused by name."""

import shutil
import subprocess
import sys
import threading
from concurrent.futures import Future
from types import SimpleNamespace

import numpy as np
import pytest

from jobping_pipeline.models import export as model_export
from jobping_pipeline.models import ModelSpec, bundled_model_path, load_encoder, loading, samples
from jobping_pipeline.models.choice import Candidate
from jobping_pipeline.models.cpu import cpu_has_bf16
from jobping_pipeline.models.runtime import OPENVINO_COMPILED, ConvertedModel
from jobping_pipeline.settings import ConfigError, load_settings

TEXTS = samples.posting_texts(24, seed=4)


@pytest.fixture(scope="module")
def torch_fp32_vectors():
    return load_encoder(ModelSpec(backend="torch", precision="fp32")).encode(TEXTS, batch_size=8)


@pytest.mark.parametrize(
    ("backend", "quantization", "min_cosine", "model_id"),
    [
        ("onnx", "none", 0.9999, "sentence-transformers/all-MiniLM-L6-v2"),
        ("openvino", "none", 0.9999, "sentence-transformers/all-MiniLM-L6-v2"),
        ("onnx", "int8", 0.98, "sentence-transformers/all-MiniLM-L6-v2+int8-onnx2"),
    ],
)
def test_converted_models_compute_the_models_vectors(torch_fp32_vectors, backend, quantization, min_cosine, model_id):
    encoder = load_encoder(ModelSpec(backend=backend, quantization=quantization))
    vectors = encoder.encode(TEXTS, batch_size=8)
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = (vectors * torch_fp32_vectors).sum(axis=1)
    assert cosines.min() > min_cosine, cosines.min()
    assert encoder.model_id == model_id and encoder.backend == backend and encoder.device == "cpu"
    if quantization == "none":
        assert cosines.min() > 0.9999


def test_openvino_int8_is_calibrated_on_the_fixed_sample_under_its_own_model_id(torch_fp32_vectors, tmp_path, monkeypatch):
    import nncf
    from tokenizers import Tokenizer

    # 24 calibration texts, not 128: the mechanics in seconds (the benchmark measures the real one).
    monkeypatch.setattr(samples, "CALIBRATION_TEXTS", 24)
    by_seed = {samples.CALIBRATION_SEED: TEXTS[::-1], samples.MEASURING_SEED: TEXTS[:12]}
    monkeypatch.setattr(samples, "posting_texts", lambda count, seed: by_seed[seed][:count])
    calibration_inputs = []
    quantize = nncf.quantize

    def recording_quantize(model, calibration_dataset, **options):
        calibration_inputs.extend(calibration_dataset.get_data())
        return quantize(model, calibration_dataset, **options)

    monkeypatch.setattr(nncf, "quantize", recording_quantize)
    spec = ModelSpec(backend="openvino", quantization="int8", model_cache=str(tmp_path))
    encoder = load_encoder(spec)
    tokenizer = Tokenizer.from_file(str(encoder.model.folder / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=256)
    expected = [encoding.ids for encoding in tokenizer.encode_batch(by_seed[samples.CALIBRATION_SEED])]
    assert [item["input_ids"][0].tolist() for item in calibration_inputs] == expected, "the fixed sample, unpadded"
    assert all(item["attention_mask"].all() for item in calibration_inputs)
    assert encoder.model_id == "sentence-transformers/all-MiniLM-L6-v2+int8-openvino" and encoder.precision == "int8"
    assert encoder.model.streams._config["INFERENCE_PRECISION_HINT"] == "f32", "one computation on every CPU"
    assert loading.resolve_backend(spec) == ("openvino", None)
    vectors = encoder.encode(TEXTS, batch_size=8)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = (vectors * torch_fp32_vectors).sum(axis=1)
    assert 0.98 < cosines.min() and cosines.mean() < 0.9999, "quantized: close to the model's vectors, not them"
    assert 'type="FakeQuantize"' in (encoder.model.folder / "model.xml").read_text(), "NNCF's int8 quantizers are in the model"
    key = model_export.conversion_key(bundled_model_path(), 256, "openvino", "int8")
    by_seed[samples.CALIBRATION_SEED] = TEXTS
    assert model_export.conversion_key(bundled_model_path(), 256, "openvino", "int8") != key, "another sample, another conversion"


@pytest.mark.parametrize(("backend", "quantization"), [("onnx", "none"), ("onnx", "int8")])
def test_a_conversion_that_computes_other_vectors_is_refused_and_not_kept(tmp_path, monkeypatch, backend, quantization):
    reference = model_export._reference_vectors
    checked = []
    # Each sample text paired with another text's vector: what a broken converter would compute.
    monkeypatch.setattr(model_export, "_reference_vectors", lambda *args: checked.append(args[2]) or np.roll(reference(*args), 1, axis=0))
    with pytest.raises(ValueError, match="the conversion computes other vectors than the model"):
        model_export.converted_model(bundled_model_path(), tmp_path, 256, backend, quantization)
    assert list(tmp_path.iterdir()) == [], "nothing kept in the cache"
    assert checked == [samples.verification_texts()] and "x" in checked[0], "postings and short texts"
    if quantization == "none":
        with pytest.raises(ConfigError, match="could not be converted for JOBPING_BACKEND=openvino .*computes other vectors"):
            load_encoder(ModelSpec(backend="openvino", model_cache=str(tmp_path)))


def test_the_measurement_times_exact_paths_unquantized_whatever_is_configured():
    spec = ModelSpec(backend="openvino", quantization="int8")
    for candidate in (Candidate("onnx", "fp32"), Candidate("openvino", "fp32")):
        assert loading._open(spec, candidate).__self__.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert loading._open(ModelSpec(), Candidate("onnx", "int8", lossy=True)).__self__.model_id.endswith("+int8-onnx2")


START_WITHOUT_TORCH = """
import sys
from jobping_pipeline.models import ModelSpec, load_encoder
encoder = load_encoder(ModelSpec(backend=sys.argv[1]))
encoder.encode(["Graduate data analyst in Berlin"], batch_size=1)
print(encoder.backend, sorted(name for name in ("torch", "transformers", "sentence_transformers", "sklearn") if name in sys.modules))
"""


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_a_converted_model_starts_without_torch(backend):
    load_encoder(ModelSpec(backend=backend))  # converted (once) in this process, cached on disk
    result = subprocess.run(
        [sys.executable, "-c", START_WITHOUT_TORCH, backend], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == [backend, "[]"]


def test_conversions_are_cached_by_model_backend_and_cpu(tmp_path, monkeypatch):
    messages = []
    folder = model_export.converted_model(bundled_model_path(), tmp_path, 256, "openvino", "none", log=messages.append)
    again = model_export.converted_model(bundled_model_path(), tmp_path, 256, "openvino", "none", log=messages.append)
    assert again == folder and len(messages) == 1, "the second call reuses the conversion"
    assert sorted(path.name for path in tmp_path.iterdir()) == [folder.name], "no scratch folder is left"
    monkeypatch.setattr(model_export, "cpu_flags", lambda: ("avx2",))
    other_cpu = model_export.conversion_key(bundled_model_path(), 256, "openvino", "int8")
    int8_onnx = model_export.conversion_key(bundled_model_path(), 256, "onnx", "int8")
    monkeypatch.setattr(model_export, "cpu_flags", lambda: ("avx2", "avx512_vnni"))
    assert model_export.conversion_key(bundled_model_path(), 256, "openvino", "int8") != other_cpu
    assert model_export.conversion_key(bundled_model_path(), 256, "onnx", "int8") == int8_onnx, "one int8 ONNX recipe everywhere"
    assert model_export.conversion_key(bundled_model_path(), 128, "openvino", "none") != folder.name


def test_openvino_keeps_what_it_compiled_and_still_runs_where_it_cannot_write(tmp_path):
    folder = load_encoder(ModelSpec(backend="openvino")).model.folder
    assert any((folder / OPENVINO_COMPILED).iterdir()), "the next process loads the compiled model"
    blocked = tmp_path / "read-only"
    shutil.copytree(folder, blocked, ignore=shutil.ignore_patterns(OPENVINO_COMPILED))
    (blocked / OPENVINO_COMPILED).symlink_to("/proc/no-such-folder")  # OpenVINO cannot create it: it raises
    vectors = ConvertedModel(blocked, "openvino").encode(TEXTS[:4], batch_size=4)
    assert vectors.shape == (4, 384) and np.isfinite(vectors).all()


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_a_batch_that_fails_stops_the_encode_and_leaves_every_stream_ready(backend, monkeypatch):
    shared = load_encoder(ModelSpec(backend=backend)).model
    model = ConvertedModel(shared.folder, backend, precision="fp32", threads=2)
    expected = model.encode(TEXTS, batch_size=4)
    made = model._feeds
    batches = []

    def third_batch_broken(texts):
        feeds, mask = made(texts)
        batches.append(texts)
        if len(batches) == 3:  # ids of another length than the mask: the runtime refuses the batch
            feeds = {**feeds, "input_ids": feeds["input_ids"][:, :2]}
        return feeds, mask

    monkeypatch.setattr(model, "_feeds", third_batch_broken)
    with pytest.raises(Exception):
        model.encode(TEXTS, batch_size=4)
    assert len(batches) <= 3 + 2 < len(TEXTS) // 4, "it stopped at the failure, not after every batch"
    monkeypatch.undo()
    again = model.encode(TEXTS, batch_size=4)  # every stream free, no batch of the failed call left in one
    assert np.array_equal(again, expected)


def test_a_slow_batch_holds_up_only_its_own_stream(monkeypatch):
    shared = load_encoder(ModelSpec(backend="openvino")).model
    model = ConvertedModel(shared.folder, "openvino", precision="fp32", threads=2)
    assert model.streams.count == 2
    expected = model.encode(TEXTS, batch_size=4)
    submit = model._runner.submit
    started = []
    last_started = threading.Event()

    def first_batch_ends_after_the_last_starts(run, feeds, mask):
        started.append(feeds)
        if len(started) == len(TEXTS) // 4:
            last_started.set()
        if len(started) > 1:
            return submit(run, feeds, mask)
        slow: Future = Future()

        def end_late():
            if last_started.wait(60):
                slow.set_result(submit(run, feeds, mask).result())
            else:
                slow.set_exception(AssertionError("the other stream waited for the slow batch"))

        threading.Thread(target=end_late, daemon=True).start()
        return slow

    monkeypatch.setattr(model._runner, "submit", first_batch_ends_after_the_last_starts)
    assert np.array_equal(model.encode(TEXTS, batch_size=4), expected)


def test_no_batch_starts_once_stopped_and_a_closed_encode_leaves_the_streams_ready():
    shared = load_encoder(ModelSpec(backend="openvino")).model
    model = ConvertedModel(shared.folder, "openvino", precision="fp32", threads=2)
    expected = model.encode(TEXTS, batch_size=2)  # 12 batches
    yielded = []
    for index, vectors in model.encode_batches(TEXTS, 2, stopped=lambda: bool(yielded)):
        yielded.append(index)
        assert np.array_equal(vectors, expected[index])
    assert 1 <= len(yielded) <= model.streams.count, "only the batches running when it stopped"
    batches = model.encode_batches(TEXTS, 2)
    next(batches)
    batches.close()  # waits for the batch still running
    assert np.array_equal(model.encode(TEXTS, batch_size=2), expected)


def test_streams_one_per_core_as_asked():
    folder = load_encoder(ModelSpec(backend="openvino")).model.folder
    for threads in (1, 2):
        model = ConvertedModel(folder, "openvino", precision="bf16" if cpu_has_bf16() else "fp32", threads=threads)
        assert model.streams.count == threads
        assert model.encode(TEXTS[:5], batch_size=2).shape == (5, 384)


def test_auto_runs_torch_where_a_gpu_may_be_and_the_measured_path_on_a_cpu(monkeypatch, tmp_path):
    monkeypatch.setattr(loading, "gpu_may_be_present", lambda: True)
    assert loading.resolve_backend(ModelSpec()) == ("torch", None)
    assert loading.resolve_backend(ModelSpec(device="cuda:1")) == ("torch", None)
    assert loading.resolve_backend(ModelSpec(backend="onnx")) == ("onnx", None)
    monkeypatch.setattr(loading, "gpu_may_be_present", lambda: False)
    assert loading.resolve_backend(ModelSpec(quantization="int8")) == ("onnx", None)
    assert loading.resolve_backend(ModelSpec(backend="openvino", quantization="int8")) == ("openvino", None)
    measured = []

    def measured_choice(spec):
        measured.append(spec)
        return SimpleNamespace(backend="openvino", precision="bf16")

    monkeypatch.setattr(loading, "measured_choice", measured_choice)
    assert loading.resolve_backend(ModelSpec(device="cpu")) == ("openvino", "bf16")
    assert loading.resolve_backend(ModelSpec()) == ("openvino", "bf16") and len(measured) == 2


def test_int8_with_auto_is_onnx_int8_and_each_int8_recipe_has_its_own_model_id():
    assert ModelSpec(quantization="int8").model_id == ModelSpec(backend="onnx", quantization="int8").model_id
    assert ModelSpec(quantization="int8").model_id != ModelSpec(backend="openvino", quantization="int8").model_id
    assert load_settings({"JOBPING_QUANTIZATION": "int8"}).backend == "auto"
    assert load_settings({"JOBPING_QUANTIZATION": "int8", "JOBPING_BACKEND": "openvino"}).backend == "openvino"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JOBPING_BACKEND": "tensorrt"}, "JOBPING_BACKEND='tensorrt' must be one of auto, torch, onnx, openvino"),
        ({"JOBPING_QUANTIZATION": "int4"}, "JOBPING_QUANTIZATION='int4' must be one of none, int8"),
        ({"JOBPING_QUANTIZATION": "int8", "JOBPING_BACKEND": "torch"}, "JOBPING_QUANTIZATION=int8 needs JOBPING_BACKEND=auto or onnx"),
        ({"JOBPING_BACKEND": "onnx", "JOBPING_DEVICE": "cuda"}, "JOBPING_BACKEND=onnx runs on the CPU"),
        ({"JOBPING_QUANTIZATION": "int8", "JOBPING_DEVICE": "cuda"}, "JOBPING_QUANTIZATION=int8 runs on the CPU"),
        ({"JOBPING_QUANTIZATION": "int8", "JOBPING_PRECISION": "bf16"}, "JOBPING_PRECISION=bf16 does not apply to JOBPING_QUANTIZATION=int8"),
    ],
)
def test_bad_backend_settings_are_refused_by_name(env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_onnx_runs_fp32_only():
    with pytest.raises(ConfigError, match="JOBPING_PRECISION=bf16 is not available with JOBPING_BACKEND=onnx"):
        load_encoder(ModelSpec(backend="onnx", precision="bf16"))


def test_auto_with_a_precision_this_cpu_has_no_exact_path_for_is_refused_by_name(monkeypatch):
    monkeypatch.setattr(loading, "gpu_may_be_present", lambda: False)
    with pytest.raises(ConfigError, match="JOBPING_PRECISION=fp16 has no exact path on this CPU with JOBPING_BACKEND=auto"):
        loading.resolve_backend(ModelSpec(precision="fp16"))
