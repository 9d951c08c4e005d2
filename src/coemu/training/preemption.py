"""What a training run stopped by a signal ends with (no torch import: the CLI imports it)."""

from __future__ import annotations

#: Exit status after a checkpoint on SIGTERM/SIGUSR1 (EX_TEMPFAIL: run again to continue).
EXIT_PREEMPTED = 75


class Preempted(Exception):
    """A stop signal arrived and the checkpoint is saved: run the job again to continue."""

    exit_status = EXIT_PREEMPTED
