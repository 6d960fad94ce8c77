"""The `gqa_accuracy` evaluate module (`gqa_accuracy.py`); a package only so that setuptools ships it and it imports in-process."""
