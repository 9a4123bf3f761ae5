"""``protolm predict <args>`` that stops before classifying chunk ``PROTOLM_TEST_PAUSE_AT_CHUNK`` (from 1)
and waits there, so that a test can send it Ctrl-C (SIGINT) from outside at a known point: after the
chunks before it were written, with that chunk in progress.
"""

import os
import sys
import time

from protolm.cli import app
from protolm.serving import batch

CHUNK = int(os.environ["PROTOLM_TEST_PAUSE_AT_CHUNK"])
classify_chunk = batch.classify_chunk
calls = 0


def pausing_classify_chunk(*args, **kwargs):
    global calls
    calls += 1
    if calls == CHUNK:
        time.sleep(300)  # the test's SIGINT ends this (KeyboardInterrupt), as Ctrl-C would mid-chunk
    return classify_chunk(*args, **kwargs)


batch.classify_chunk = pausing_classify_chunk
sys.argv = ["protolm", "predict", *sys.argv[1:]]
app.main()
