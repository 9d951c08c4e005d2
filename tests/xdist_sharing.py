"""How the tests share the machine in pytest-xdist processes (scripts/test.sh: ``-n N``).

Two things, both found by timing the suite on 2 cores:

* **Threads.** Every worker's torch and its subprocesses would start one OpenMP thread per
  core; N workers on the same cores then spin against each other and small tests run up to
  15 times slower than alone (a 5 s overfit test took 75 s). Each worker gets
  ``cores // N`` threads (at least 1), in ``OMP_NUM_THREADS`` for its subprocesses and in
  torch itself. Snakemake jobs still set their own (``OMP_NUM_THREADS={threads}`` in the rules).
* **Modules that share a run.** The tests of test_workflow.py start from one tiny pipeline run
  (session fixture ``tiny_run``), those of test_slurm.py from one SLURM run (module fixture):
  each module runs whole in one worker, so that its run is made once, and these modules are
  handed out first, the SLURM one (the longest, and mostly waiting on SLURM) before the other.
  pytest-xdist's own ``xdist_group`` marks cannot do this here: with pytest 9 they no longer
  reach the scheduler (xdist 3.8 renames ``item._nodeid``, which pytest 9 no longer reads).
"""

from __future__ import annotations

import os

import pytest

#: Test modules run whole in one worker, handed out in this order before every other test.
SHARED_RUN_MODULES = ("tests/test_slurm.py", "tests/test_workflow.py")


def machine_cores() -> int:
    """The cores this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def pytest_configure(config: pytest.Config) -> None:
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")  # set in the worker processes only
    if not workers:
        return
    threads = max(1, machine_cores() // int(workers))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``--dist loadgroup``: every other test one by one to the next free worker, the
    SHARED_RUN_MODULES first, each whole to one worker."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedRunScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in SHARED_RUN_MODULES else nodeid

        def _assign_work_unit(self, node) -> None:
            for scope in reversed(SHARED_RUN_MODULES):
                if scope in self.workqueue:
                    self.workqueue.move_to_end(scope, last=False)
            super()._assign_work_unit(node)

    return SharedRunScheduling(config, log)
