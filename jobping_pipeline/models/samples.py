"""Fixed samples of job-posting texts, the same on every machine: one to time the backends
(``choice.py``), one to calibrate OpenVINO's int8 model and one to verify every conversion
(``export.py``)."""

from __future__ import annotations

import hashlib

MEASURING_SEED = 11
CALIBRATION_SEED = 97
# The calibration sample sets the int8 model's activation scales, so it is part of what
# `<model>+int8-openvino` computes: another sample computes other vectors under the same id.
# test_models_samples.py pins its digest; changing it needs a new model id suffix.
CALIBRATION_TEXTS = 128


def posting_texts(count: int, seed: int) -> list[str]:
    """``count`` demo postings built into the text the pipeline embeds."""
    from jobping_pipeline.demo.postings import generate_jobs
    from jobping_pipeline.texts import build_text

    return [
        build_text((job.title, job.company, job.location, job.categories, job.description))
        for job in generate_jobs(count, seed=seed)
    ]


def sample_texts(count: int = 32) -> list[str]:
    """The texts every backend is timed on."""
    return posting_texts(count, MEASURING_SEED)


def calibration_texts() -> list[str]:
    """The texts OpenVINO's int8 model learns its activation ranges from."""
    return posting_texts(CALIBRATION_TEXTS, CALIBRATION_SEED)


# Texts of a few tokens, where a conversion broken only for short inputs would show.
SHORT_TEXTS = ("x", "Nurse", "Data analyst in Berlin", "Koch (m/w/d), Vollzeit, München")


def verification_texts() -> list[str]:
    """What a conversion must encode as the model does before it is kept (``export.py``)."""
    return posting_texts(12, MEASURING_SEED) + list(SHORT_TEXTS)


def digest(texts: list[str]) -> str:
    return hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
