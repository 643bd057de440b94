"""Input checks are real `if ... raise`, so they hold under `python -O` (which strips asserts):
wrong shapes get a message naming what was expected, not an obscure error deep inside."""
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


@pytest.mark.parametrize("case", sorted(CASES))
def test_checks_hold_under_python_O(case, tmp_path):
    code, error, words = CASES[case]
    done = subprocess.run([sys.executable, "-O", "-c", f"import sys\n{code}", str(tmp_path / "cache")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and error in done.stderr and words in done.stderr, done.stderr[-2000:]
