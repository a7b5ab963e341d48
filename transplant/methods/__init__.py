"""Embedding initializers. Every method has one signature: `fn(inputs: MethodInputs, **params) -> Tensor`
returning the new rows for `inputs.alignment.new_ids`, shaped (len(new_ids), n, d); shared and
role-matched special tokens are copied from the base by `build_matrices`."""

from transplant.methods.base import METHODS, MethodInputs, MethodSpec, build_matrices

__all__ = ["METHODS", "MethodInputs", "MethodSpec", "build_matrices"]

# Importing the modules registers their methods.
from transplant.methods import omp, simple, tokenadapt  # noqa: F401
