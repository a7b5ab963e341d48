"""ZeTT hypernetwork: a network that maps any token to embeddings of a frozen base model.

pieces: a token's bytes as base-vocabulary pieces (the hypernetwork's input)
sampler: the per-batch tokenizers it is trained on
model: the network and its folder (config.json + model.safetensors)
objective: the frozen base run on predicted embeddings
train: the training loop (single process, torchrun or accelerate)
"""
