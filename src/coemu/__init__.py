"""COEmu: a workflow-managed reproduction of the COEmuNet CO line emulator.

Stages: hydro models -> rotated cubes -> images -> global statistics ->
training -> evaluation. Units are SI everywhere. The data contracts and the
design notes are in the repository's ``docs/contracts.md`` and ``docs/design.md``.
"""

__version__ = "0.1.0"

__all__ = ["Emulator", "__version__"]


def __getattr__(name: str):
    """``coemu.Emulator`` without importing torch at ``import coemu`` (the CLI starts fast)."""
    if name == "Emulator":
        from coemu.nn import Emulator

        return Emulator
    raise AttributeError(f"module 'coemu' has no attribute '{name}'")
