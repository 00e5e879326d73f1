"""`python -m services.clusterer`."""

import os

# One BLAS thread unless the operator sets these: OpenBLAS's threads busy-wait for work, and beside the other
# services on a small machine a site's first calibration took 2.1 s with two threads against 0.6 s with one
# (2 cores, both busy; 0.4 s either way on idle cores). A clusterer with cores of its own: raise them.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from services.clusterer.app import create_app  # noqa: E402
from shared.event_loop import serve  # noqa: E402

serve(create_app().run())
