"""Evaluation of the emulator: the paper's metrics, figures and timing."""
