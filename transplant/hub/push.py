"""Push a finished folder to a Hub repo: write its model card, create the repo (and branch) if needed,
upload what is not there yet, retry what fails for a while, and return the repo's URL.

Everything goes through huggingface_hub's public API, so the usual settings apply: the token from
HF_TOKEN or the login cache (`hf auth login`), the server from HF_ENDPOINT (read when huggingface_hub
is imported). With hf_xet installed, huggingface_hub 2.4 uploads by the Xet protocol whatever the
server offers; HF_HUB_DISABLE_XET=1 selects the LFS protocol, for servers without Xet.

Files whose content the repo already holds are not sent again: the client asks the server for each
file's remote id (preupload) and LFS objects already stored get no upload action, so pushing an
unchanged folder makes no commit, and a push that was interrupted resumes where it stopped.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from transplant.errors import UserError
from transplant.hub.folder_kind import folder_kind
from transplant.hub.model_card import write_card

TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
# hidden files are temp leftovers or local settings, never part of a model
IGNORE = [".*", "*/.*"]
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # tries of each step, the first included
    first_wait_s: float = 2.0  # doubled after every failure
    max_wait_s: float = 60.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def push_folder(
    out_dir: Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    progress: bool = True,
    retry: RetryPolicy = RetryPolicy(),
    commit_message: str | None = None,
) -> str:
    """Upload `out_dir` (a transplant output or hypernetwork folder) to `repo_id`; returns the repo URL.

    `private` applies when the repo is created; `revision` names a branch, created from main if missing.
    Raises UserError for what a user can act on: no token, a repo owned by someone else, no network, a
    folder that is not a transplant output.
    """
    from huggingface_hub import HfApi, get_token

    folder = folder_kind(out_dir)
    _check_repo_id(repo_id)
    if write_card(folder, repo_id):
        log(f"model card written to {Path(out_dir) / 'README.md'}")
    token = get_token()
    if not token:
        raise UserError(
            "no Hugging Face token: set HF_TOKEN to a token with write access, or run `hf auth login`"
        )
    api = HfApi(token=token)
    files = sorted(p for p in Path(out_dir).rglob("*") if p.is_file() and not _hidden(p, Path(out_dir)))
    size = sum(p.stat().st_size for p in files)
    where = f"{repo_id}" + (f" (branch {revision})" if revision else "")
    with _hub_errors(repo_id, revision, api.endpoint, retry), _progress_bars(progress):
        _retrying(lambda: api.create_repo(repo_id, private=private, exist_ok=True), retry)
        if revision:
            _retrying(lambda: api.create_branch(repo_id, branch=revision, exist_ok=True), retry)
        before = _retrying(lambda: api.repo_info(repo_id, revision=revision), retry)
        if private and not before.private:
            log(f"note: {repo_id} already existed and is public; --private only applies when creating a repo")
        log(f"pushing {len(files)} files ({size / 1e6:,.1f} MB) to {where} at {api.endpoint}")
        after = _retrying(
            lambda: api.upload_folder(
                repo_id=repo_id,
                folder_path=str(out_dir),
                revision=revision,
                commit_message=commit_message or f"Upload {folder.kind} folder with transplant",
                ignore_patterns=list(IGNORE),
            ),
            retry,
        )
    if after.oid == before.sha:
        log(f"nothing to upload: {where} already holds these files")
    url = f"{api.endpoint}/{repo_id}"
    return f"{url}/tree/{revision}" if revision else url


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _check_repo_id(repo_id: str) -> None:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if repo_id.count("/") != 1:
        raise UserError(f"repo id {repo_id!r} must be ORG/NAME (a user or organisation, a slash, a name)")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise UserError(f"invalid repo id {repo_id!r}: {_one_line(str(error))}") from error


def _retrying(step: Callable[[], T], retry: RetryPolicy) -> T:
    """`step()`, tried again after transient failures (server busy or failing, network errors) with
    exponential backoff; the last failure propagates."""
    wait, attempt = retry.first_wait_s, 1
    while True:
        try:
            return step()
        except Exception as error:
            reason = _transient(error)
            if reason is None or attempt >= retry.attempts:
                raise
            attempt += 1
            log(f"{reason}; retrying in {wait:g} s (attempt {attempt} of {retry.attempts})")
            time.sleep(wait)
            wait = min(wait * 2, retry.max_wait_s)


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _transient(error: BaseException) -> str | None:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    for link in _chain(error):
        if isinstance(link, HfHubHTTPError) and link.response is not None:
            if link.response.status_code in TRANSIENT_STATUS:
                return f"the Hub answered {link.response.status_code}"
            return None
        if isinstance(link, httpx2.TransportError):
            return f"network error ({type(link).__name__})"
    return None


@contextmanager
def _progress_bars(show: bool):
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    was_disabled = are_progress_bars_disabled()
    if not show:
        disable_progress_bars()
    try:
        yield
    finally:
        if not show and not was_disabled:
            enable_progress_bars()


@contextmanager
def _hub_errors(repo_id: str, revision: str | None, endpoint: str, retry: RetryPolicy):
    """Hub and network failures as one-line UserErrors that say what to do."""
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    again = "run the same push again: files already uploaded are skipped"
    try:
        yield
    except UserError:
        raise
    except Exception as error:
        chain = list(_chain(error))
        http = next((e for e in chain if isinstance(e, HfHubHTTPError) and e.response is not None), None)
        network = next((e for e in chain if isinstance(e, httpx2.TransportError)), None)
        xet = next((e for e in chain if "xet" in str(e).lower() and not constants.HF_HUB_DISABLE_XET), None)
        if http is not None:
            status = http.response.status_code
            said = _one_line(http.response.headers.get("X-Error-Message") or str(http))
            if isinstance(http, RevisionNotFoundError):
                message = f"branch {revision!r} not found in {repo_id}: {said}"
            elif status == 401 and not isinstance(http, RepositoryNotFoundError):
                message = (f"the Hub at {endpoint} refused the token ({said}); set HF_TOKEN to a valid token "
                           "with write access, or run `hf auth login`")
            elif status == 403:
                message = (f"no write access to {repo_id}: it belongs to another user or organisation, or the "
                           f"token is read-only ({said})")
            elif isinstance(http, RepositoryNotFoundError):
                message = f"{repo_id} does not exist for this token at {endpoint} and could not be created ({said})"
            elif status in TRANSIENT_STATUS:
                message = f"the Hub at {endpoint} still answered {status} after {retry.attempts} attempts; {again}"
            else:
                message = f"the Hub at {endpoint} answered {status}: {said}"
        elif network is not None:
            message = (f"cannot reach the Hub at {endpoint} ({type(network).__name__}: {_one_line(str(network))}) "
                       f"after {retry.attempts} attempts: is the network down, or HF_ENDPOINT wrong? {again}")
        elif xet is not None:
            message = (f"the Xet upload to {endpoint} failed ({_one_line(str(xet))}); a server without Xet "
                       "needs HF_HUB_DISABLE_XET=1, which selects the LFS protocol")
        elif isinstance(error, ValueError):
            message = _one_line(str(error))
        else:
            raise
        raise UserError(message) from error


def _one_line(text: str) -> str:
    return " ".join(text.split())
