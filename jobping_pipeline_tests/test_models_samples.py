"""The fixed samples (models/samples.py): the same texts on every machine."""

from jobping_pipeline.models import samples
from jobping_pipeline.models.spec import QUANTIZED_RECIPES

# The calibration sample is part of what `<model>+int8-openvino` computes: if this digest changes,
# so do the vectors under that id. Give the recipe a new name in spec.QUANTIZED_RECIPES (every
# installation on it re-embeds once), then update the digest here.
CALIBRATION_DIGEST = "7aa094fc69a2d0a2"


def test_the_calibration_sample_is_pinned_to_the_openvino_int8_model_id():
    texts = samples.calibration_texts()
    assert len(texts) == samples.CALIBRATION_TEXTS == 128
    assert QUANTIZED_RECIPES["openvino"] == "int8-openvino"
    assert samples.digest(texts) == CALIBRATION_DIGEST, "a new calibration sample needs a new model id (see above)"


def test_the_samples_are_postings_of_real_length_and_differ():
    measuring, calibration = samples.sample_texts(), samples.calibration_texts()
    assert len(measuring) == 32 and samples.sample_texts() == measuring
    assert not set(measuring) & set(calibration)
    assert sum(len(text) for text in calibration) / len(calibration) > 1000
