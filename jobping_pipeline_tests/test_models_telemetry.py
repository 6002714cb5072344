"""The converters' usage reports (models/telemetry.py): none leave the process."""

import openvino_telemetry
import pytest
from openvino_telemetry.utils.sender import TelemetrySender

from jobping_pipeline.models.telemetry import silence_telemetry


def test_the_converters_send_no_telemetry(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(TelemetrySender, "send", lambda *args, **kwargs: pytest.fail("telemetry sent"))
    silence_telemetry()
    telemetry = openvino_telemetry.Telemetry(app_name="nncf", app_version="1", tid="G-1", enable_opt_in_dialog=False)
    assert telemetry.consent is False
    telemetry.send_event("category", "action", "label", force_send=True)
    telemetry.start_session("category")
    telemetry.force_shutdown(0.1)
    assert not (tmp_path / "intel").exists(), "no client id written"
