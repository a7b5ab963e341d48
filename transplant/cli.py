"""Command line: parse, then delegate to the library. Bad input ends with one line and exit code 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from transplant.errors import UserError

EPILOG_SOURCES = """\
BASE and DONOR accept: a local Hugging Face folder, a tokenizer.json file, a .gguf file, a Hub repo id
(org/name, downloaded when online), a short alias, or an offline pack/tokenizer:
{known}
"""


def _known_table() -> str:
    from transplant.sources import list_known

    return "\n".join(f"  {name:<22} {desc}" for name, desc in list_known().items())


def _methods_table() -> str:
    from transplant.methods import METHODS

    return "\n".join(f"  {name:<12} {spec.summary}" for name, spec in sorted(METHODS.items()))


def transplant_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="transplant",
        description="Give a pretrained causal LM a donor's tokenizer: new embedding rows for every donor token, "
        "written as a normal Hugging Face folder. Other commands (each has --help): `transplant eval`, "
        "`transplant push`, `transplant tokenizer train`, `transplant bytes score|generate`, `transplant dynamic eval`, `transplant hypernet train`, `transplant heal`.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="methods:\n" + _methods_table() + "\n\n" + EPILOG_SOURCES.format(known=_known_table()),
    )
    p.add_argument("--base", help="the model whose weights are kept")
    p.add_argument("--donor-tokenizer", "--donor", dest="donor", help="the model or tokenizer whose vocabulary is taken")
    p.add_argument("--method", help="embedding initializer (default omp)")
    p.add_argument("--output", "-o", help="output folder (default: BASE--DONOR--METHOD in the current folder)")
    p.add_argument("--k", type=int, help="OMP: anchors per new token (default 64)")
    p.add_argument("--batch-size", type=int, help="OMP: new tokens solved together (default 4096)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], help="OMP: correlation screen precision (default auto)")
    p.add_argument("--temperature", type=float, help="tokenadapt: softmax temperature of the similarity weights")
    p.add_argument("--top-k", type=int, help="tokenadapt: neighbours in the global estimate")
    p.add_argument("--global-weight", type=float, help="tokenadapt: w in (1 - w) * local + w * global")
    p.add_argument("--threshold", type=float, help="tokenadapt: minimum similarity of a global neighbour")
    p.add_argument("--aux-model", help="tokenadapt: sentence-embedding model folder (default: offline all-MiniLM-L6-v2)")
    p.add_argument("--hypernet", metavar="HN_DIR", help="hypernet: the trained hypernetwork folder (see `transplant hypernet train --help`)")
    p.add_argument("--output-bias", type=float, metavar="NATS",
                   help="shift new tokens' logits by NATS (e.g. -2) through a hidden-state direction; 0 = off. "
                   "Compensates for new rows scoring multi-piece tokens as high as single pieces")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="any other method parameter")
    p.add_argument("--recipe", help="YAML file with the same options (command-line values win)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--push-to-hub", metavar="ORG/NAME", help="upload the finished folder to this Hub repo (see `transplant push --help`)")
    p.add_argument("--private", action="store_true", help="with --push-to-hub: create the repo private")
    p.add_argument("--revision", metavar="BRANCH", help="with --push-to-hub: push to this branch (created if needed)")
    p.add_argument("--allow-pickle", action="store_true", help="allow loading .bin (pickle) weights; never needed for safetensors/GGUF")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _parse_value(text: str):
    import yaml

    return yaml.safe_load(text)


def run_transplant(argv: list[str]) -> int:
    from transplant.pipeline import TransplantOptions, run

    args = transplant_parser().parse_args(argv)
    values: dict = {}
    if args.recipe:
        values.update(_load_recipe(args.recipe))
    for key in ("base", "donor", "method", "output", "output_bias"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    params = dict(values.pop("params", {}) or {})
    for key in ("k", "batch_size", "precision", "temperature", "top_k", "global_weight", "threshold", "aux_model", "hypernet"):
        if getattr(args, key) is not None:
            params[key] = getattr(args, key)
    for item in args.param:
        if "=" not in item:
            raise UserError(f"--param expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        params[key.replace("-", "_")] = _parse_value(value)
    if not values.get("base") or not values.get("donor"):
        raise UserError("both --base and --donor-tokenizer are required (or a --recipe that sets them); see --help")
    options = TransplantOptions(
        base=str(values["base"]),
        donor=str(values["donor"]),
        method=values.get("method", "omp"),
        output=values.get("output"),
        overwrite=args.overwrite or bool(values.get("overwrite", False)),
        output_bias=float(values.get("output_bias", 0.0)),
        allow_pickle=args.allow_pickle,
        params=params,
        progress=not args.no_progress,
    )
    push_to = args.push_to_hub or values.get("push_to_hub")
    if (args.private or args.revision) and not push_to:
        raise UserError("--private and --revision only apply with --push-to-hub")
    out = run(options)
    print(out)
    if push_to:
        from transplant.hub.push import push_folder

        print(push_folder(out, str(push_to), private=args.private, revision=args.revision, progress=not args.no_progress))
    return 0


def _load_recipe(path: str) -> dict:
    import yaml

    file = Path(path)
    if not file.is_file():
        raise UserError(f"recipe {path} not found")
    data = yaml.safe_load(file.read_text()) or {}
    if not isinstance(data, dict):
        raise UserError(f"recipe {path} must be a mapping of option: value")
    data = {k.replace("-", "_"): v for k, v in data.items()}
    if "donor_tokenizer" in data:
        data["donor"] = data.pop("donor_tokenizer")
    unknown = set(data) - {"base", "donor", "method", "output", "output_bias", "params", "overwrite", "push_to_hub"}
    if unknown:
        raise UserError(
            f"recipe {path}: unknown keys {sorted(unknown)}; allowed: base, donor_tokenizer, method, output, output_bias, params, overwrite, push_to_hub"
        )
    return data


def _delegate(module: str, function: str):
    """Subcommands live in their own modules, imported only when used."""

    def call(argv: list[str]) -> int:
        import importlib

        return getattr(importlib.import_module(module), function)(argv)

    return call


COMMANDS = {
    "run": run_transplant,
    "eval": _delegate("transplant.cli_eval", "run_eval"),
    "push": _delegate("transplant.cli_push", "run_push"),
    "tokenizer": _delegate("transplant.cli_tokenizer", "run_tokenizer"),
    "bytes": _delegate("transplant.cli_bytes", "run_bytes"),
    "dynamic": _delegate("transplant.cli_dynamic", "run_dynamic"),
    "hypernet": _delegate("transplant.cli_hypernet", "run_hypernet"),
    "heal": _delegate("transplant.cli_heal", "run_heal"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = COMMANDS.get(argv[0]) if argv else None
    try:
        if command is not None:
            return command(argv[1:])
        return run_transplant(argv)
    except UserError as err:
        print(f"transplant: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("transplant: interrupted; no output was left behind", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
