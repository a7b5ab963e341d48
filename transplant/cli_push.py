"""`transplant push`: arguments only; the work is in transplant.hub."""

from __future__ import annotations

import argparse
from pathlib import Path

from transplant.errors import UserError

EPILOG = """\
The folder must be what `transplant` wrote (it holds transplant.json) or a hypernetwork folder.
Before the upload, README.md is (re)written as the model card: base model, donor tokenizer, method and
parameters, alignment counts, timings, and the evaluation that `transplant eval OUT ... --reference BASE
--json OUT/eval.json --plot OUT/eval.png` stored in the folder. A README.md you wrote yourself (without
the `written by transplant push` line) is kept as it is.

Token: HF_TOKEN, else the login cache (`hf auth login`). Server: HF_ENDPOINT (default the Hugging Face Hub).
With hf_xet installed uploads use the Xet protocol; for a server without Xet set HF_HUB_DISABLE_XET=1.
Files the repo already holds are not uploaded again, so an interrupted push resumes when run again, and
pushing an unchanged folder changes nothing.
"""


def push_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="transplant push",
        description="Upload a transplanted model folder to a Hugging Face Hub repo, with a model card, "
        "creating the repo if needed; prints the repo URL.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    p.add_argument("folder", help="output folder of `transplant` (or a hypernetwork folder)")
    p.add_argument("repo_id", metavar="ORG/NAME", help="the Hub repo, created if missing")
    p.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its visibility)")
    p.add_argument("--revision", metavar="BRANCH", help="push to this branch, created from main if missing")
    p.add_argument("--message", help="commit message (default: 'Upload transplant folder with transplant')")
    p.add_argument("--retries", type=int, default=4, metavar="N",
                   help="tries again after a transient failure (server errors, network), waiting 2, 4, 8, ... s (default 4)")
    p.add_argument("--card-only", action="store_true", help="write README.md (the model card) and print it; upload nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run_push(argv: list[str]) -> int:
    from transplant.hub.push import RetryPolicy, push_folder

    args = push_parser().parse_args(argv)
    if args.retries < 0:
        raise UserError("--retries must be 0 or more")
    if args.card_only:
        from transplant.hub.folder_kind import folder_kind
        from transplant.hub.model_card import build_card, write_card

        folder = folder_kind(args.folder)
        if not write_card(folder, args.repo_id):
            print(f"{Path(args.folder) / 'README.md'} is your own card and was kept; transplant's would be:\n")
        print(build_card(folder, args.repo_id))
        return 0
    url = push_folder(
        Path(args.folder),
        args.repo_id,
        private=args.private,
        revision=args.revision,
        progress=not args.no_progress,
        retry=RetryPolicy(attempts=args.retries + 1),
        commit_message=args.message,
    )
    print(url)
    return 0
