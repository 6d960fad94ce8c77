"""The `nlvr2` evaluate module (`nlvr2.py`); a package only so that setuptools ships it and it imports in-process."""
