"""Data-set preparation: the model-wise split and the preprocessing transform (paper eq. 12-16)."""
