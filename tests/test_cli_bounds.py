"""Numbers on the command line have bounds: a typo (a window of 1e-4 s, 1e5 frames per second, a
batch of 0) is one line from argparse before any work, never hours of decoding or a huge allocation."""
import pytest

from vavl.cli import main
from vavl.core.errors import ConfigError

CASES = [
    (["predict", "x.wav", "--model", "m", "--window", "1e-4"], "--window: '1e-4' is outside 1..3600 seconds"),
    (["predict", "x.wav", "--model", "m", "--step", "1e-5"], "--step: '1e-5' is outside 0.1..3600 seconds"),
    (["predict", "x.wav", "--model", "m", "--window", "nan"], "--window: 'nan' is outside"),
    (["extract", "--manifest", "m.jsonl", "--out", "c", "--fps", "1e5"], "--fps: '1e5' is outside 0.01..60 frames per second"),
    (["extract", "--manifest", "m.jsonl", "--out", "c", "--batch-size", "0"], "--batch-size: '0' is outside 1..1024"),
    (["extract", "--manifest", "m.jsonl", "--out", "c", "--batch-size", "2.5"], "--batch-size: '2.5' is not a whole number"),
    (["extract", "--manifest", "m.jsonl", "--out", "c", "--face-batch", "100000"], "--face-batch: '100000' is outside 1..4096"),
    (["evaluate", "--manifest", "m.jsonl", "--model", "m", "--out", "o", "--batch-size", "-3"], "--batch-size: '-3' is outside 1..4096"),
    (["analyze", "--manifest", "m.jsonl", "--model", "m", "--out", "o", "--batch-size", "0"], "--batch-size: '0' is outside 1..4096"),
]


@pytest.mark.parametrize("argv,says", CASES, ids=[" ".join(a[0:1] + a[-2:]) for a, _ in CASES])
def test_out_of_range_numbers_stop_in_one_line(argv, says, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and says in err and "Traceback" not in err, err


def test_the_library_refuses_a_window_that_would_redecode_a_file_thousands_of_times():
    import vavl

    for kw in ({"window": 1e-4}, {"step": 1e-5}):
        with pytest.raises(ConfigError, match="the window must be >= 1.0 s and the step >= 0.1 s"):
            vavl.predict("x.wav", model="m", **kw)
