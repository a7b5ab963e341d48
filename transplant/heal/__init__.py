"""Healing a transplant: a short training of the embedding rows it made up.

pipeline.py     checks, loading, training and writing, end to end (`transplant heal`)
inputs.py       the transplant folder, its record, its base model and its new token ids
trainable.py    what trains (new rows, norms, LoRA) and what stays frozen
lora.py         the LoRA, merged into the weights on save
objectives.py   the losses as pure functions (lm; distill by byte chunks both tokenizers delimit)
tasks.py        text windows -> token batches -> loss, per objective
loop.py         AdamW, warm-up, stop by steps or minutes, checkpoints and resume
distributed.py  torchrun / accelerate launch: one process per device, gradients averaged
output.py       the healed folder, written atomically
"""
