"""The model wing: one :class:`Encoder` protocol, one way in (:func:`load_encoder`), and each
backend a leaf that knows none of the others.

==================  ================================================================
``protocol``        what every encoder offers; batching helpers
``spec``            what to load (``ModelSpec``; ``ApiSpec`` in ``api_spec``), from the settings
``loading``         spec -> encoder: the backend chosen (explicit, GPU, or measured), loaded once
``choice``          the fastest exact path on this CPU, measured once and cached
``cpu``             the CPU's facts (flags, cores, FMA peak) and the runtimes' versions
``torch_backend``   sentence-transformers on torch (the only importer of torch, with ``export``)
``converted``       ONNX Runtime and OpenVINO, on a model exported once (``export``, ``runtime``)
``openai_api``      an OpenAI-compatible embeddings API (``openai_protocol``: its wire format)
``fingerprint``     a content fingerprint of a model folder (model ids, conversion keys)
``samples``         fixed texts: the measuring sample and OpenVINO int8's calibration sample
``telemetry``       OpenVINO's converter and NNCF report no usage from this process
==================  ================================================================
"""

from jobping_pipeline.models.loading import load_encoder, loaded_model_count, measured_choice
from jobping_pipeline.models.api_spec import ApiSpec
from jobping_pipeline.models.protocol import BATCHES_PER_MODEL_CALL, Encoder
from jobping_pipeline.models.spec import EncoderSpec, ModelSpec, bundled_model_path, spec_from_settings

__all__ = [
    "BATCHES_PER_MODEL_CALL",
    "ApiSpec",
    "Encoder",
    "EncoderSpec",
    "ModelSpec",
    "bundled_model_path",
    "load_encoder",
    "loaded_model_count",
    "measured_choice",
    "spec_from_settings",
]
