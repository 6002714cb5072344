"""Converting a local sentence-transformers model for ``JOBPING_BACKEND=onnx`` or ``openvino``:
once per machine, offline, cached on disk.

The model is exported to ONNX with ``torch.onnx`` (torch and transformers are imported only
here, only when the cache has no conversion yet). For ONNX Runtime it is then fused by its
transformer optimizer, or with ``JOBPING_QUANTIZATION=int8`` quantized dynamically (int8
weights, activations quantized per batch at run time: no calibration data). For OpenVINO it is
saved as OpenVINO's IR (OpenVINO fuses by itself), or with int8 quantized by NNCF after training:
7-bit weights and int8 activations, the activations' ranges learned from a fixed sample of
postings (``samples.calibration_texts``; NNCF computes them in fp32 on every CPU). The cache key covers
the model folder's contents, backend, quantization, runtime version and the CPU's instruction
sets, so a conversion is never reused where it would compute something else. Conversions are
written to a temporary folder and renamed into place: concurrent runs never see half a model.
Before it is put in place, a conversion must compute the model's own vectors of a sample of
postings and short texts (cosine >= 0.9999 to sentence-transformers' fp32 vectors; >= 0.90 for
int8), with the runtime in fp32 as the runs use it for int8: a converter's or quantizer's fault
would otherwise be recorded under the model's id, where the audit, recomputing with the same
conversion, could not see it. OpenVINO's converter and NNCF report usage unless told not to:
this process tells them not to (``telemetry.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from importlib import metadata
from pathlib import Path

from jobping_pipeline.models.cpu import this_cpu
from jobping_pipeline.models.fingerprint import folder_fingerprint
from jobping_pipeline.models.runtime import INPUT_NAMES, ONNX_FILE, OPENVINO_FILE, ConvertedModel
from jobping_pipeline.models.telemetry import silence_telemetry
from jobping_pipeline.models import samples

# Bump when the conversion itself changes: every cached conversion is then made again.
CONVERSION_VERSION = "3"
# The least cosine a conversion's vector of a verification text may have to the model's own.
# int8 measured here: >= 0.991 on postings, 0.966-0.978 for a one-letter text (0.95 with a
# 24-text calibration); another text's vector, what a broken conversion gives, is far below.
MIN_COSINE = {"none": 0.9999, "int8": 0.90}
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_flags() -> tuple[str, ...]:
    """The instruction sets OpenVINO compiles for: its conversions are kept apart by them."""
    return tuple(flag for flag in CPU_FLAGS if flag in this_cpu().flags)


def conversion_key(model_folder: Path, max_seq_length: int, backend: str, quantization: str) -> str:
    """Names one conversion: the model's files (their names and contents: a folder replaced in
    place is converted again), settings, runtime, CPU."""
    runtime = "onnxruntime" if backend == "onnx" else "openvino"
    description = {
        "files": folder_fingerprint(model_folder),
        "max_seq_length": max_seq_length,
        "backend": backend,
        "quantization": quantization,
        "runtime": metadata.version(runtime),
        "cpu": cpu_flags() if backend == "openvino" else (),
        "conversion": CONVERSION_VERSION,
    }
    if backend == "openvino" and quantization == "int8":
        description["calibration"] = samples.digest(samples.calibration_texts())
        description["nncf"] = metadata.version("nncf")
    digest = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]
    return f"{model_folder.name}-{backend}-{quantization}-{digest}"


def converted_model(model_folder: Path, cache_root: Path, max_seq_length: int, backend: str, quantization: str, log=print) -> Path:
    """The folder of the converted model, converting it first when the cache has none."""
    target = cache_root / conversion_key(model_folder, max_seq_length, backend, quantization)
    if (target / "encoder.json").exists():
        return target
    cache_root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=cache_root, prefix=".converting-") as scratch:
        work = Path(scratch) / "model"
        work.mkdir()
        texts = samples.verification_texts()
        reference = _reference_vectors(model_folder, max_seq_length, texts)
        onnx_path = _export_onnx(model_folder, work / ONNX_FILE, max_seq_length)
        if backend == "onnx" and quantization == "int8":
            _quantize_dynamic(onnx_path)
        elif backend == "onnx":
            _fuse_transformer(onnx_path)
        else:
            _save_openvino(onnx_path, work / OPENVINO_FILE, quantization, max_seq_length)
            onnx_path.unlink()
        check_conversion(work, backend, quantization, texts, reference)
        try:
            os.rename(work, target)
        except OSError:
            if not (target / "encoder.json").exists():  # not another process's finished conversion
                raise
    log(f"converted {model_folder.name} for {backend} ({quantization}) in {time.perf_counter() - started:.0f} s: {target}")
    return target


def check_conversion(folder: Path, backend: str, quantization: str, texts: list[str], reference) -> None:
    """Raises unless the converted model in ``folder`` computes ``reference`` (the model's own
    vectors of ``texts``) within :data:`MIN_COSINE`."""
    vectors = ConvertedModel(folder, backend, precision="fp32").encode(texts, len(texts))
    cosine = float((vectors * reference).sum(axis=1).min())
    if not cosine >= MIN_COSINE[quantization]:  # NaN fails too
        raise ValueError(
            f"the conversion computes other vectors than the model (cosine {cosine:.4f} < "
            f"{MIN_COSINE[quantization]} on a sample of {len(texts)} texts); it was not kept"
        )


def _export_onnx(model_folder: Path, path: Path, max_seq_length: int) -> Path:
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    source = _transformer_folder(model_folder)
    transformers_logging.disable_progress_bar()  # a 'Loading weights' bar on stderr otherwise
    model = AutoModel.from_pretrained(str(source), attn_implementation="eager", local_files_only=True).eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    ids = torch.randint(1000, 2000, (2, 16), dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    axes = {0: "batch", 1: "sequence"}
    # The tracer warns about shapes and indexing it records as constants; every conversion is
    # checked against sentence-transformers' own vectors (check_conversion).
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LastHiddenState(model).eval(),
            (ids, mask, torch.zeros_like(ids)),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=list(INPUT_NAMES),
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes, "last_hidden_state": axes},
        )
    tokenizer = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    pad = (tokenizer.get("padding") or {})
    shutil.copy(source / "tokenizer.json", path.parent / "tokenizer.json")
    (path.parent / "encoder.json").write_text(
        json.dumps(
            {
                "max_seq_length": max_seq_length,
                "dimensions": int(model.config.hidden_size),
                "attention_heads": int(model.config.num_attention_heads),
                "pad_id": int(pad.get("pad_id", 0)),
                "pad_token": pad.get("pad_token", "[PAD]"),
            }
        )
    )
    return path


def _reference_vectors(model_folder: Path, max_seq_length: int, texts: list[str]):
    """The model's own vectors of ``texts``: sentence-transformers on torch, fp32, the same
    token limit (its tokenizer, truncation and pooling, not the converted runtime's)."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a 'Loading weights' bar on stderr otherwise
    model = SentenceTransformer(str(model_folder), device="cpu", local_files_only=True)
    model.max_seq_length = max_seq_length
    return model.encode(texts, batch_size=len(texts), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)


def _modules(model_folder: Path) -> list[dict]:
    modules_file = model_folder / "modules.json"
    return json.loads(modules_file.read_text()) if modules_file.exists() else []


def why_not_convertible(model_folder: Path) -> str | None:
    """None when the runtime reproduces the model (a transformer, mean pooling, optionally
    normalized); else what stands in the way."""
    modules = _modules(model_folder)
    kinds = [module.get("type", "").rsplit(".", 1)[-1] for module in modules]
    pooling_folder = next((model_folder / m["path"] for m in modules if m.get("type", "").endswith("Pooling")), None)
    pooling = json.loads((pooling_folder / "config.json").read_text()) if pooling_folder else {}
    if pooling.get("pooling_mode_mean_tokens") and all(kind in ("Transformer", "Pooling", "Normalize") for kind in kinds):
        return None
    return f"{model_folder} is not a mean-pooling transformer (modules: {', '.join(kinds) or 'none'})"


def _transformer_folder(model_folder: Path) -> Path:
    """sentence-transformers folders keep the transformer at their root (or in 0_Transformer)."""
    reason = why_not_convertible(model_folder)
    if reason:
        raise ValueError(f"{reason}; only JOBPING_BACKEND=torch runs it")
    transformer = next((m["path"] for m in _modules(model_folder) if m.get("type", "").endswith("Transformer")), "")
    return model_folder / transformer if transformer else model_folder


def _fuse_transformer(path: Path) -> None:
    """ONNX Runtime's BERT fusions (attention, skip layer norm, bias GELU in single kernels):
    measured 1.03-1.22x torch fp32 here, against 0.91x for the graph as exported."""
    from onnxruntime.transformers.optimizer import optimize_model

    config = json.loads((path.parent / "encoder.json").read_text())
    fused = optimize_model(
        str(path), model_type="bert", num_heads=config["attention_heads"], hidden_size=config["dimensions"], opt_level=1
    )
    fused.save_model_to_file(str(path))


def _quantize_dynamic(path: Path) -> None:
    """int8 weights per output channel, in 7 bits (``reduce_range``) on every CPU: the u8 x s8
    multiply-add of AVX2 and AVX-512 without VNNI saturates on 8-bit weights, and one setting
    everywhere keeps ``<model>+int8-onnx2`` one computation across machines (the first recipe's
    8 bits where VNNI exists made vectors a mean cosine of 0.9930 from the 7-bit ones, under one
    id: below the audit's 0.999)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = path.with_name("model-int8.onnx")
    with _quiet_logging():  # the quantizer logs a pre-processing hint at WARNING
        quantize_dynamic(
            str(path),
            str(quantized),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
            op_types_to_quantize=["MatMul", "Gemm"],
        )
    os.replace(quantized, path)


@contextlib.contextmanager
def _quiet_logging():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _save_openvino(onnx_path: Path, xml_path: Path, quantization: str, max_seq_length: int) -> None:
    import openvino

    silence_telemetry()
    model = openvino.convert_model(str(onnx_path))
    if quantization == "int8":
        model = _quantize_static(model, onnx_path.parent, max_seq_length)
    openvino.save_model(model, str(xml_path), compress_to_fp16=False)


def _quantize_static(model, folder: Path, max_seq_length: int):
    """NNCF's post-training int8 for transformers (SmoothQuant, symmetric int8 weights,
    asymmetric int8 activations, bias correction), calibrated one unpadded text at a time on the
    fixed sample. Every weight in 7 bits (``OverflowFix.ENABLE``): NNCF's default keeps 8 bits
    after the first layer, and on a CPU without VNNI those saturate, so the same model computed
    vectors a mean cosine of 0.9979 (minimum 0.9959) from a VNNI CPU's, under one id."""
    import nncf
    import numpy as np
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_padding()  # tokenizer.json may pad to a fixed length: the runs never feed pads alone
    tokenizer.enable_truncation(max_length=max_seq_length)

    def feeds(text: str) -> dict[str, np.ndarray]:
        encoding = tokenizer.encode(text)
        return {
            "input_ids": np.array([encoding.ids], dtype=np.int64),
            "attention_mask": np.array([encoding.attention_mask], dtype=np.int64),
            "token_type_ids": np.array([encoding.type_ids], dtype=np.int64),
        }

    texts = samples.calibration_texts()
    nncf.set_log_level(logging.ERROR)
    # NNCF draws progress bars on stdout (rich): in a run's log, lines of box characters. Stdout
    # is the process's, so for these seconds, once per machine, other threads' prints are dropped.
    with contextlib.redirect_stdout(io.StringIO()):
        return nncf.quantize(
            model,
            nncf.Dataset([feeds(text) for text in texts]),
            model_type=nncf.ModelType.TRANSFORMER,
            preset=nncf.QuantizationPreset.MIXED,
            subset_size=len(texts),
            advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE),
        )
