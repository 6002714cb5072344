"""OpenVINO's converter and NNCF report usage to Google Analytics unless told not to: this
pipeline's processes tell them not to, whatever the user's consent file says."""

from __future__ import annotations


class _Nothing:
    """Accepts every call and does nothing."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


def silence_telemetry() -> None:
    """OpenVINO's converter and NNCF send usage events to Google Analytics (and write a client
    id under ~/intel) unless a consent file says no; this process sends nothing and writes
    nothing there, whatever that file says."""
    try:
        from openvino_telemetry import Telemetry
    except ImportError:
        return

    def init(self, app_name=None, app_version=None, tid=None, *args, **kwargs) -> None:
        self.consent, self.tid, self.backend, self.sender = False, tid, _Nothing(), _Nothing()

    Telemetry.init = init
    existing = getattr(Telemetry, "_SingletonMetaClass__single_instance", None)
    if existing is not None:
        init(existing)
