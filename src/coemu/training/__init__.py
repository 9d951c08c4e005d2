"""Training of COEmuNet: losses, the DDP loop, checkpoints."""
