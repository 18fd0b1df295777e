import os
import tempfile

# Insurance against a jaxlib CPU deadlock seen twice this project (BUILD_NOTES.md, issue 4):
# batched Cholesky / triangular solves running concurrently inside a lax.scan on a 2-thread
# Eigen pool can hang at 0 % CPU (also reported upstream, PyAutoFit #1528).  The code paths
# that hit it were changed (sequential solves, lax.map); this flag removes the pool for the
# test process so a regression cannot stall CI.  Measured: no slowdown of the suite's
# linear-algebra-heavy files (53 s with, 61 s without, same background load).
#
# --xla_backend_optimization_level=0: the suite's programs are small and compiled once or twice
# each, so LLVM's optimisation passes cost more than they save (measured on tests/models with
# two workers: 149 s at the default level, 97 s at 0; BUILD_NOTES.md, issue 11).  It changes
# code generation only, not the HLO; tests compare like with like (jit vs jit).
for _flag in ("--xla_cpu_multi_thread_eigen=false", "--xla_backend_optimization_level=0"):
    if _flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()
# One persistent compilation cache for the run, shared by both xdist workers and the
# subprocesses of the kill/resume and fake-device tests: repeated runs of the same tiny
# configs (resume, sweep vs separate runs) reuse compiled programs.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(tempfile.gettempdir(), f"egm-test-jax-cache-{os.getuid()}"),
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
