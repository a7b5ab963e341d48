"""The loss split on a tiny fvt transplant: the parts add up to the plain bits-per-byte."""

import math

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.test_heal_cli import TEXT, transplant_dir  # noqa: F401  (fixture)
from transplant.eval.loss_split import new_token_mask, split_loss
from transplant.eval.score import score_text


def test_parts_add_up_to_the_scorer_and_count_every_target(transplant_dir):  # noqa: F811
    model = AutoModelForCausalLM.from_pretrained(transplant_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(transplant_dir)
    new = new_token_mask(transplant_dir, model.get_output_embeddings().weight.shape[0])
    text = TEXT * 3
    split = split_loss(model, tokenizer, text, new, context=16, stride=8)
    plain = score_text(model, tokenizer, text, context=16, stride=8)
    assert split.new_targets > 0 and split.shared_targets > 0
    assert split.new_targets + split.shared_targets == plain.n_tokens
    assert math.isclose(split.bpb, plain.bits_per_byte, rel_tol=1e-5)
    assert math.isclose(split.bpb_new_targets + split.bpb_shared_targets, split.bpb, rel_tol=1e-9)
    assert 0 < split.mean_new_mass_at_shared < 1
    assert split.bpb_shared_without_new_mass < split.bpb_shared_targets
    assert 0 < split.shared_after_new <= split.shared_targets
    assert 0 < split.bpb_shared_after_new < split.bpb_shared_targets
    # per-token attribution: the named tokens are new ones, and their parts never exceed the totals
    assert 0 < sum(n for _, n, _ in split.costly_new_targets) <= split.new_targets
    assert sum(bits for _, _, bits in split.costly_new_targets) <= split.bpb_new_targets * len(text.encode()) + 0.05
    taken = sum(p for _, p in split.mass_takers)
    assert 0 < taken <= split.mean_new_mass_at_shared * split.shared_targets + 1e-3
    assert all(tokenizer.convert_tokens_to_ids(t) is not None and new[tokenizer.convert_tokens_to_ids(t)]
               for t, _ in split.mass_takers)


def test_without_new_tokens_nothing_is_attributed_to_them(transplant_dir):  # noqa: F811
    model = AutoModelForCausalLM.from_pretrained(transplant_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(transplant_dir)
    none = torch.zeros(model.get_output_embeddings().weight.shape[0], dtype=torch.bool)
    split = split_loss(model, tokenizer, TEXT, none, context=16, stride=8)
    assert split.new_targets == 0 and split.bpb_new_targets == 0 and split.mean_new_mass_at_shared == 0
    assert split.costly_new_targets == [] and split.mass_takers == []
    assert split.shared_after_new == 0 and split.bpb_shared_after_new == 0
    assert math.isclose(split.bpb_shared_without_new_mass, split.bpb, rel_tol=1e-12)
