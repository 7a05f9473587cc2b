"""tk.train's progress line: the time left is measured after the first chunk (which carries
the compilation), on a fake clock."""

import pytest

from toolkit import progress


@pytest.fixture
def clock(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    return now


def test_time_left_is_the_rate_since_the_first_chunk(clock, capsys):
    report = progress.progress_printer(True, total=1000, size=1)
    row = [{"loss": 1.0, "accuracy": 0.5}]
    clock[0] = 10.0  # first chunk: 100 steps, compile included
    report(row, 100, 10.0)
    clock[0] = 14.0  # 200 more steps in 4 s: 700 left at 50 steps/s = 14 s
    report(row, 300, 50.0)
    clock[0] = 200.0
    report(row, 1000, 5.0)
    lines = capsys.readouterr().out.splitlines()
    assert "left" not in lines[0] and "left" not in lines[2]
    assert lines[1].endswith("50 steps/s  14 s left")


@pytest.mark.parametrize(
    "seconds, text", [(0.4, "0 s"), (59.6, "1 min 00 s"), (125, "2 min 05 s"), (7620, "2 h 07 min")]
)
def test_durations_read_as_a_person_writes_them(seconds, text):
    assert progress._duration(seconds) == text
