"""Exact byte-level probabilities from tokenized LMs (Phan et al. 2024): scoring, ensembles, FIM.

Import from the modules: `likelihood.score_bytes`, `next_byte.ByteStream` / `open_stream`,
`generate.generate`, `ensemble.combine`, `fim.run_fim`, `model.load_byte_lm`.
"""
