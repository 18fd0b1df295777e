import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Insurance against a jaxlib CPU deadlock seen twice this project (BUILD_NOTES.md, issue 4):
# batched Cholesky / triangular solves running concurrently inside a lax.scan on a 2-thread
# Eigen pool can hang at 0 % CPU (also reported upstream, PyAutoFit #1528).  The code paths
# that hit it were changed (sequential solves, lax.map); this flag removes the pool for the
# test process so a regression cannot stall CI.  Measured: no slowdown of the suite's
# linear-algebra-heavy files (53 s with, 61 s without, same background load).
_flag = "--xla_cpu_multi_thread_eigen=false"
if _flag not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()
