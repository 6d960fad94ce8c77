"""The `vqa_accuracy` evaluate module (`vqa_accuracy.py`); a package only so that setuptools ships it and it imports in-process."""
