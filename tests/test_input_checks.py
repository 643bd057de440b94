"""Input checks are real `if ... raise`, so they hold under `python -O` (which strips asserts):
wrong shapes get a message naming what was expected, not an obscure error deep inside."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "face crops": ("from vavl.media.faces import FaceCropper; import numpy as np; FaceCropper()(np.zeros((2, 8, 8), np.uint8))",
                   "ValueError", "frames must be (t, h, w, 3) uint8"),
    "cache write": ("from vavl.data.cache import FeatureCache; import torch; "
                    "FeatureCache(sys.argv[1]).write('c1', torch.zeros(2, 3, 4), None)", "DataError", "c1: audio features must be (t, d)"),
    "speech encoder": ("from tests.tiny_encoders import tiny_wav2vec2; from vavl.encoders.speech import SpeechEncoder; import torch; "
                       "SpeechEncoder(tiny_wav2vec2())(torch.zeros(1, 2, 800))",
                       "ValueError", "expected waveforms (b, n)"),
    "metrics": ("from vavl.evaluation.metrics import classification_metrics; import numpy as np; "
                "classification_metrics(np.zeros(3, int), np.zeros(4, int))", "ValueError", "differ in shape"),
}


# one `python -O` process runs every case (a process start, and its imports, instead of one per case) and
# prints, per case, the traceback of what it raised, or nothing when it raised nothing
CHILD = """import json, sys, traceback
assert False, "asserts are stripped under -O: this line must not raise"
raised = {}
for case, code in json.loads(sys.argv[2]).items():
    try:
        exec(code, {"sys": sys})
        raised[case] = None
    except Exception:
        raised[case] = traceback.format_exc()
print(json.dumps({"optimize": sys.flags.optimize, "raised": raised}))
"""
# one worker runs the module: the process above runs once
pytestmark = pytest.mark.xdist_group("input_checks")


@pytest.fixture(scope="module")
def raised(tmp_path_factory):
    cache = tmp_path_factory.mktemp("input_checks") / "cache"
    done = subprocess.run([sys.executable, "-O", "-c", CHILD, str(cache), json.dumps({c: v[0] for c, v in CASES.items()})],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["optimize"] == 1
    return report["raised"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_checks_hold_under_python_O(case, raised):
    code, error, words = CASES[case]
    trace = raised[case]
    assert trace is not None, f"{case}: nothing raised under python -O"
    assert error in trace and words in trace, trace[-2000:]
