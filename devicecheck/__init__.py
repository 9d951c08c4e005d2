"""The GPU paths, checked in one short run: the solver, the emulators, DDP training and the timing stage.

``python -m devicecheck OUT`` (from the repository's root; or
``scripts/gpu-check.sh OUT`` from anywhere) runs, on synthetic cubes it makes
itself:

* :mod:`~devicecheck.pipeline`: the pipeline's stages on a mini data set
  (images on the device, statistics, DDP fine-tuning under torchrun killed and
  resumed, ``coemu predict``, ``evaluate`` and ``timing`` on the device);
* :mod:`~devicecheck.solver`: the solver on the device against the CPU,
  images per second, memory against the chunk sizing;
* :mod:`~devicecheck.emulators`: every emulator kind's inference and
  training throughput, float32 and bf16;

and writes ``gpu-check.json`` and ``gpu-check.md`` into OUT. It exits 1 when
a check fails or CUDA is absent. ``--device cpu`` runs the same code on the
CPU at small sizes (a test in CI).

It is a tool of the repository, beside ``bench/``, not part of the ``coemu``
package: it runs the checkout's CLI stages as the workflow's rules do and
reads ``coemu`` as any user would, and nothing in ``coemu`` imports it, so it
is neither installed with the package nor part of any stage's code digest.
"""

from devicecheck.runner import run_checks

__all__ = ["run_checks"]
