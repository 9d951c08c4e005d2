"""The GPU paths, checked in one short run: the solver, the emulators, DDP training and the timing stage.

``python -m coemu.devicecheck OUT`` (or ``scripts/gpu-check.sh OUT``) runs, on
synthetic cubes it makes itself:

* :mod:`~coemu.devicecheck.pipeline`: the pipeline's stages on a mini data set
  (images on the device, statistics, DDP fine-tuning under torchrun killed and
  resumed, ``coemu predict``, ``evaluate`` and ``timing`` on the device);
* :mod:`~coemu.devicecheck.solver`: the solver on the device against the CPU,
  images per second, memory against the chunk sizing;
* :mod:`~coemu.devicecheck.emulators`: every emulator kind's inference and
  training throughput, float32 and bf16;

and writes ``gpu-check.json`` and ``gpu-check.md`` into OUT. It exits 1 when
a check fails or CUDA is absent. ``--device cpu`` runs the same code on the
CPU at small sizes (a test in CI).
"""

from coemu.devicecheck.runner import run_checks

__all__ = ["run_checks"]
