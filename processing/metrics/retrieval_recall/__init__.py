"""The `retrieval_recall` evaluate module (`retrieval_recall.py`); a package only so that setuptools ships it and it imports in-process."""
