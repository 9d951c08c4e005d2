"""COEmu: a workflow-managed reproduction of the COEmuNet CO line emulator.

Stages (see ``shared/DESIGN.md``): hydro models -> rotated cubes -> images ->
global statistics -> training -> evaluation. Units are SI everywhere.
"""

__version__ = "0.1.0"
