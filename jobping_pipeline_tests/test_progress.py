"""Progress bars draw on a terminal and stay silent otherwise."""

import io

from jobping_pipeline import progress


def test_silent_when_not_on_a_terminal(monkeypatch, capsys):
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    assert list(progress.counted(range(5), 5, "demo-data")) == [0, 1, 2, 3, 4]
    assert capsys.readouterr().err == ""


def test_draws_rate_and_eta_on_a_terminal(monkeypatch):
    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    with progress.bar(10, "backfill") as drawn:
        assert not drawn.disable
        drawn.update(4)
        text = str(drawn)
    assert "backfill" in text and "4/10" in text and "job/s" in text and "<" in text
