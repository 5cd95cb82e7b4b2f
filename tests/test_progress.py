"""Progress off a terminal: timed lines with the rate and the time left, a last line, none at 0."""

import io

import pytest

from reidgraft.progress import Progress, duration


def test_timed_lines_with_rate_and_time_left(monkeypatch):
    monkeypatch.setenv("REIDGRAFT_LOG_SECONDS", "10")
    stream = io.StringIO()  # not a terminal
    counter = Progress(100, "epoch 2/5", per_step=32, stream=stream)
    start = counter.started
    counter.update(10, now=start + 5)  # too soon for a line
    counter.update(10, now=start + 20)  # 20 of 100 batches in 20 s: 32 images/s, 80 s left
    counter.update(10, now=start + 25)  # within 10 s of the last line
    counter.update(10, now=start + 40)
    counter.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "epoch 2/5: 20/100 batches (20%), 32.0 images/s, 20s so far, 1m20s left"
    assert lines[1] == "epoch 2/5: 40/100 batches (40%), 32.0 images/s, 40s so far, 1m00s left"
    assert lines[2].startswith("epoch 2/5: 40/100 batches done in ")
    assert len(lines) == 3


def test_resumed_steps_count_but_are_no_part_of_the_rate(monkeypatch):
    monkeypatch.setenv("REIDGRAFT_LOG_SECONDS", "1")
    stream = io.StringIO()
    counter = Progress(1000, "indexing", unit="images", initial=500, stream=stream)
    counter.update(100, now=counter.started + 10)  # 100 images in 10 s, 400 to go
    assert stream.getvalue() == "indexing: 600/1000 images (60%), 10.00 images/s, 10s so far, 40s left\n"


def test_zero_seconds_means_no_lines_and_a_bad_value_is_named(monkeypatch):
    monkeypatch.setenv("REIDGRAFT_LOG_SECONDS", "0")
    stream = io.StringIO()
    with Progress(3, "epoch 1/1", stream=stream) as counter:
        counter.update(1, now=counter.started + 1000)
    assert stream.getvalue() == ""
    monkeypatch.setenv("REIDGRAFT_LOG_SECONDS", "soon")
    with pytest.raises(
        ValueError, match="REIDGRAFT_LOG_SECONDS='soon': give the seconds between progress lines"
    ):
        Progress(3, "epoch 1/1", stream=io.StringIO())
    assert (duration(4.2), duration(185), duration(7260)) == ("4s", "3m05s", "2h01m")
