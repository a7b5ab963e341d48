"""The model card (README.md) of a pushed folder, built only from what the folder records.

Metadata: base_model (a Hub id only where one is known: an offline pack's upstream, a Hub alias, a Hub id
typed as the base, or a Hub cache snapshot), library_name, license (read from the base's own card or
the pack's upstream; "unknown" otherwise, never guessed), pipeline_tag and tags. Body: base, donor
tokenizer, method and parameters, alignment counts, timings, the command that reproduces it, and
the evaluation table and plot when `transplant eval ... --json OUT/eval.json --plot OUT/eval.png` left
them in the folder.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from transplant.hub.folder_kind import FolderKind

EVAL_JSON = "eval.json"
EVAL_PNG = "eval.png"
# the first line after the metadata; a README without it is the user's and is never overwritten
MARKER = "<!-- written by `transplant push`; delete this line to keep your edits on the next push -->"


@dataclass(frozen=True)
class Origin:
    hub_id: str | None
    license: str | None
    note: str | None = None  # how the weights reached us, when not straight from the Hub


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_SNAPSHOT = re.compile(r"models--(?P<org>[^/]+?)--(?P<name>[^/]+)/snapshots/")


def origin(source: dict) -> Origin:
    """Where a recorded base or donor ({"spec", "path"}) comes from, as far as the record tells."""
    from transplant.offline_packs import PACKS
    from transplant.sources import ALIASES

    spec, path = str(source.get("spec", "")), Path(str(source.get("path", "")))
    key = spec.strip().lower()
    if key in PACKS:
        pack = PACKS[key]
        return Origin(pack.hub_id, pack.license, pack.origin_note)
    hub_id = None
    if key in ALIASES:
        hub_id = ALIASES[key]
    elif _HUB_ID.match(spec) and not Path(spec).exists():
        hub_id = spec
    elif match := _SNAPSHOT.search(str(path)):
        hub_id = f"{match['org']}/{match['name']}"
    return Origin(hub_id, _card_license(path))


def _card_license(folder: Path) -> str | None:
    metadata = read_metadata(folder / "README.md")
    value = metadata.get("license")
    return str(value) if value else None


def read_metadata(readme: Path) -> dict:
    """The YAML metadata block of a model card, or {} when there is none or it does not parse."""
    if not readme.is_file():
        return {}
    match = re.match(r"^---\s*\n(.*?)\n---\s*\n", readme.read_text(encoding="utf-8", errors="replace"), re.DOTALL)
    try:
        data = yaml.safe_load(match.group(1)) if match else {}
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def build_card(folder: FolderKind, title: str) -> str:
    if folder.kind == "hypernetwork":
        metadata, body = _hypernetwork(folder, title)
    else:
        metadata, body = _transplant(folder, title)
    return "---\n" + yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True) + "---\n" + MARKER + "\n\n" + body


def write_card(folder: FolderKind, title: str) -> bool:
    """Write README.md unless the user wrote their own; True when written."""
    readme = folder.path / "README.md"
    if readme.is_file() and MARKER not in readme.read_text(encoding="utf-8", errors="replace"):
        return False
    card = build_card(folder, title)
    if not readme.is_file() or readme.read_text(encoding="utf-8") != card:
        readme.write_text(card, encoding="utf-8")
    return True


def _metadata(base: Origin, tags: list[str], pipeline: str | None) -> dict:
    metadata: dict = {}
    if base.hub_id:
        metadata["base_model"] = base.hub_id
    metadata["library_name"] = "transformers"
    metadata["license"] = base.license or "unknown"
    if pipeline:
        metadata["pipeline_tag"] = pipeline
    metadata["tags"] = tags
    return metadata


def _describe(source: dict, found: Origin) -> str:
    from transplant.sources import list_known

    spec = str(source.get("spec", ""))
    text = f"`{spec}`"
    if found.hub_id and found.hub_id != spec:
        text += f" ([{found.hub_id}](https://huggingface.co/{found.hub_id}))"
    known = list_known().get(spec.strip().lower())
    if known and not found.hub_id:
        text += f" ({known})"
    if found.note:
        text += f"; {found.note}"
    return text


def _transplant(folder: FolderKind, title: str) -> tuple[dict, str]:
    record = folder.record
    base, donor = record.get("base", {}), record.get("donor", {})
    base_origin, donor_origin = origin(base), origin(donor)
    method = str(record.get("method", "unknown"))
    healing = record.get("healing")
    tags = ["tokenizer-transplant", method] + (["healed"] if healing else [])
    metadata = _metadata(base_origin, tags, "text-generation")

    lines = [f"# {title}", ""]
    lines.append(
        f"{_describe(base, base_origin)} given the tokenizer of {_describe(donor, donor_origin)} by "
        f"tokenizer transplantation: every donor token has an embedding row made by "
        f"the **{method}** method; all other weights are the base's, unchanged."
    )
    lines.append("")
    if healing:
        lines.append("After the transplant the model was trained further (healing); see the parameters below.")
    else:
        lines.append(
            "**The new tokens' embeddings are zero-shot estimates**: nothing was trained after the transplant, "
            "so expect this model to do worse than its base until it is fine-tuned. The evaluation below, "
            "when present, says by how much."
        )
    lines += ["", "## How it was made", "", "| | |", "|---|---|"]
    lines.append(f"| base | {_describe(base, base_origin)} |")
    lines.append(f"| donor tokenizer | {_describe(donor, donor_origin)} |")
    lines.append(f"| method | `{method}` |")
    lines.append(f"| parameters | {_params(record.get('parameters') or {})} |")
    calibration = record.get("calibration")
    if calibration:
        lines.append(f"| output bias | {calibration.get('output_bias'):+g} nats on new tokens' logits |")
    if healing:
        lines.append(f"| healing | {_params(healing)} |")
    if "tied" in record:
        lines.append(f"| embeddings | {'tied' if record['tied'] else 'untied (input and output rows each made)'} |")
    alignment = record.get("alignment") or {}
    if alignment:
        lines.append(f"| alignment | {_alignment(alignment)} |")
        matched = {k: v for k, v in (alignment.get("special_map") or {}).items() if v is not None}
        if matched:
            pairs = ", ".join(f"`{k}` ← `{v}`" for k, v in matched.items())
            lines.append(f"| special tokens from the base | {_cell(pairs)} |")
    timings = record.get("timings") or {}
    if timings:
        steps = ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in timings.items())
        lines.append(f"| time | {sum(timings.values()):.1f} s ({steps}) |")
    versions = record.get("versions") or {}
    if versions:
        lines.append(f"| versions | {', '.join(f'{k} {v}' for k, v in versions.items())} |")
    lines += ["", "Made with:", "", "```bash", _command(record), "```", ""]
    lines += _evaluation(folder.path)
    lines += _usage(title)
    return metadata, "\n".join(lines)


def _params(params: dict) -> str:
    if not params:
        return "defaults"
    return _cell(", ".join(f"`{k}={json.dumps(v)}`" for k, v in params.items()))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _alignment(alignment: dict) -> str:
    parts = [f"{alignment.get('donor_vocab', 0):,} donor ids"]
    parts.append(f"{alignment.get('shared', 0):,} shared by bytes with the base vocabulary")
    if "base_vocab" in alignment:
        parts[-1] += f" ({alignment['base_vocab']:,} ids)"
    parts.append(f"{alignment.get('special_matched', 0):,} special tokens matched by role")
    parts.append(f"{alignment.get('new', 0):,} new")
    return "; ".join(parts)


def _command(record: dict) -> str:
    words = ["transplant", "--base", str(record.get("base", {}).get("spec")),
             "--donor-tokenizer", str(record.get("donor", {}).get("spec")), "--method", str(record.get("method"))]
    for key, value in (record.get("parameters") or {}).items():
        words += ["--param", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    calibration = record.get("calibration")
    if calibration:
        words += ["--output-bias", f"{calibration['output_bias']:g}"]
    return " ".join(words)


def _evaluation(folder: Path) -> list[str]:
    path = folder / EVAL_JSON
    lines = ["## Evaluation", ""]
    if not path.is_file():
        lines.append(
            "No evaluation was stored with this model. `transplant eval OUT --reference BASE --json OUT/eval.json "
            "--plot OUT/eval.png` stores one, and the next push shows it here."
        )
        return lines + [""]
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
        models, texts = result["models"], result["texts"]
    except (OSError, ValueError, KeyError, TypeError):
        return lines + [f"`{EVAL_JSON}` is in the repository but could not be read.", ""]
    reference = result.get("reference")
    domains = list(texts) + ["overall"]
    lines.append(f"Bits per byte (bpb) on the same UTF-8 text for every model, context {result.get('context')}, "
                 f"stride {result.get('stride')}, {result.get('dtype')}; "
                 + ", ".join(f"{d} {t['n_bytes']:,} bytes" for d, t in texts.items()) + ".")
    if reference:
        lines.append(f"First row: `{reference}`'s bpb. Other rows: bpb ratio to it (1.10x = 10% more bits per byte).")
    lines += ["", "| model | " + " | ".join(domains) + " |", "|---|" + "---|" * len(domains)]
    this = _this_model(models, folder)
    for model in sorted(models, key=lambda m: not m.get("is_reference")):
        cells = {**model["domains"], "overall": model["overall"]}
        ratio = reference and not model.get("is_reference")
        row = [f"{cells[d]['bpb_ratio']:.3f}x" if ratio else f"{cells[d]['bits_per_byte']:.3f}" for d in domains]
        name = f"**{model['name']}** (this model)" if model is this else model["name"]
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    if this is not None and reference and this["overall"].get("bpb_ratio") is not None:
        overall = this["overall"]
        lines += ["", (f"Over all domains this model needs **{overall['bpb_ratio']:.3f}x** the bits per byte of "
                  f"`{reference}` on the same text ({overall['bits_per_byte']:.3f} bpb).")]
    if (folder / EVAL_PNG).is_file():
        lines += ["", f"![bits-per-byte ratio per domain]({EVAL_PNG})"]
    return lines + [""]


def _this_model(models: list[dict], folder: Path) -> dict | None:
    """The evaluated model that is this folder: same path, else same name, else the only non-reference one."""
    here = folder.resolve()
    for model in models:
        if Path(str(model.get("path", ""))).resolve() == here:
            return model
    named = [m for m in models if m.get("name") == folder.resolve().name]
    if len(named) == 1:
        return named[0]
    others = [m for m in models if not m.get("is_reference")]
    return others[0] if len(others) == 1 else None


def _usage(title: str) -> list[str]:
    return [
        "## Use", "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f'tokenizer = AutoTokenizer.from_pretrained("{title}")',
        f'model = AutoModelForCausalLM.from_pretrained("{title}")',
        "```", "",
    ]


def _hypernetwork(folder: FolderKind, title: str) -> tuple[dict, str]:
    config = folder.record
    base = config.get("base_model")
    found = origin({"spec": base, "path": ""}) if base else Origin(None, None)
    metadata = _metadata(found, ["tokenizer-transplant", "hypernetwork"], None)
    metadata["library_name"] = "transplant"
    for_base = f"`{base}`" if base else "(not recorded)"
    body = (
        f"# {title}\n\nA hypernetwork that predicts input and output embeddings for the tokens of any tokenizer, "
        f"for the base model {for_base}. Use it with "
        f"`transplant --base {base or 'BASE'} --donor-tokenizer ANY --method hypernet --hypernet {title}`.\n"
    )
    training = config.get("training") or {}
    if training.get("steps"):
        body += (
            f"\nTrained for {training['steps']} steps ({training.get('minutes')} minutes, {training.get('tokens')} tokens) "
            f"on {training.get('world_size', 1)} {training.get('device', '')} process(es).\n"
        )
    return metadata, body
