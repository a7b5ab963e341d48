"""Embedding initializers. Every method has one signature: `fn(inputs: MethodInputs, **params) -> Tensor`
returning the new rows for `inputs.alignment.new_ids`, shaped (len(new_ids), n, d); shared and
role-matched special tokens are copied from the base by `build_matrices`, unless the method returns a
`MethodOutput` that also predicts the shared rows."""

from transplant.methods.base import METHODS, MethodInputs, MethodOutput, MethodSpec, as_output, build_matrices

__all__ = ["METHODS", "MethodInputs", "MethodOutput", "MethodSpec", "as_output", "build_matrices"]

# Importing the modules registers their methods.
from transplant.methods import hypernet, omp, simple, tokenadapt  # noqa: F401
