"""Numeric kernels of transplant, installed as `transplant.kernels`.

Run from a checkout (`python -m pytest`, `python -m transplant.eval...`), the repository root is on
sys.path and this folder would shadow the Hub's `kernels` package, which transformers imports when it
is installed (transformers 5.25 depends on it). Imported under that top-level name, this module hands
the name over to the installed package, as if the repository root were not on the path.
"""

if __name__ == "kernels":
    import importlib
    import os
    import sys

    _root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    _path = sys.path[:]
    del sys.modules["kernels"]
    sys.path[:] = [p for p in _path if os.path.abspath(p or os.curdir) != _root]
    try:
        sys.modules["kernels"] = importlib.import_module("kernels")
    finally:
        sys.path[:] = _path
