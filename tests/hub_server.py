"""A local stand-in for the Hugging Face Hub, for tests that must not reach the internet.

It speaks the HTTP protocol that the official clients use, unpatched: huggingface_hub 2.4.0 for
uploads (with HF_HUB_DISABLE_XET=1, so files travel by the LFS protocol) and transformers 5.23's
from_pretrained for downloads. Two servers run on 127.0.0.1, each on a free port:

- the Hub itself (the endpoint the client gets in HF_ENDPOINT):
  POST   /api/repos/create, DELETE /api/repos/delete, GET /api/whoami-v2, POST /api/validate-yaml,
  GET    /api/agent-harnesses                       (an empty registry; the client asks once a day)
  GET    /api/models/{repo}[/revision/{rev}]        model info, siblings (with sizes and LFS info: ?blobs=1)
  GET    /api/models/{repo}/tree/{rev}[/{path}]     ?recursive=1
  POST   /api/models/{repo}/paths-info/{rev}        form fields paths, expand
  GET    /api/models/{repo}/refs, POST /api/models/{repo}/branch/{branch}
  POST   /api/models/{repo}/preupload/{rev}         upload mode (lfs/regular) and remote oid per file
  POST   /api/models/{repo}/commit/{rev}            NDJSON: header, file (base64), lfsFile, deletedFile/Folder
  POST   /{repo}.git/info/lfs/objects/batch         LFS batch API, basic transfer, upload links to storage
  POST   /{repo}.git/info/lfs/objects/verify
  GET/HEAD /{repo}/resolve/{rev}/{path}             regular files: ETag = git blob sha1, X-Repo-Commit;
                                                    LFS files: 302 to storage with X-Linked-Etag/-Size
- the object storage (another origin, like the Hub's CDN and S3 buckets): signed PUT of an LFS
  object, checked against its sha256 and size before it is kept, and signed GET/HEAD with ranges.

Errors carry X-Error-Code / X-Error-Message as the Hub's do, so the client raises its own typed errors
(RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError). Tokens map to users; a user
writes to repos under their own name or their organisations', reads public repos and their own.

Test hooks: `requests` logs every request; `fail_next` answers the next matching requests with a status
or drops the connection; `hold` stops a matching request before its body is read and then drops it,
to stand for a process killed mid-upload.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

REGULAR_LIMIT = 10 * 1024 * 1024  # the Hub stores larger files by LFS whatever .gitattributes says
LFS_PATTERNS = [
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gguf", "*.gz", "*.h5", "*.joblib",
    "*.lfs.*", "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet",
    "*.pb", "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "*.tar", "*.tflite",
    "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
]
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class Entry:
    """One file of a commit's tree: its git blob id, and for LFS files the object it points to."""

    oid: str
    size: int
    sha256: str | None = None  # set for LFS files

    def as_json(self, path: str) -> dict:
        item = {"type": "file", "oid": self.oid, "size": self.size, "path": path}
        if self.sha256 is not None:
            item["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": len(lfs_pointer(self.sha256, self.size))}
        return item


@dataclass
class Commit:
    oid: str
    parent: str | None
    tree: dict[str, Entry]
    summary: str
    date: str


@dataclass
class Repo:
    repo_id: str
    private: bool
    created_at: str
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit oid
    commits: dict[str, Commit] = field(default_factory=dict)


@dataclass
class Fault:
    method: str
    pattern: re.Pattern
    status: int | None  # None: close the connection without an answer
    times: int


@dataclass
class Hold:
    method: str
    pattern: re.Pattern
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@dataclass
class Logged:
    server: str  # "hub" or "storage"
    method: str
    path: str
    status: int


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class HubServer:
    """Start with `with HubServer(tokens={"tok": "alice"}) as hub:`; `hub.endpoint` is HF_ENDPOINT."""

    def __init__(self, tokens: dict[str, str], orgs: dict[str, set[str]] | None = None):
        self.tokens = tokens
        self.orgs = orgs or {}
        self.repos: dict[str, Repo] = {}
        self.requests: list[Logged] = []
        self._faults: list[Fault] = []
        self._holds: list[Hold] = []
        self._lock = threading.RLock()
        self._secret = hashlib.sha256(str(time.time_ns()).encode()).digest()
        self._root = Path(tempfile.mkdtemp(prefix="hub-server-"))
        (self._root / "blobs").mkdir()
        (self._root / "lfs").mkdir()
        self._servers: list[ThreadingHTTPServer] = []

    # ------------------------------------------------------------ lifecycle

    def __enter__(self):
        for handler in (_HubHandler, _StorageHandler):
            server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            server.daemon_threads = True
            server.hub = self
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._servers.append(server)
        return self

    def __exit__(self, *exc) -> None:
        for hold in self._holds:
            hold.release.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        shutil.rmtree(self._root, ignore_errors=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def storage(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    # ------------------------------------------------------------ test hooks

    def fail_next(self, method: str, path_regex: str, status: int | None = 503, times: int = 1) -> None:
        """Answer the next `times` requests matching METHOD and the path regex with `status`
        (None: drop the connection without an answer)."""
        with self._lock:
            self._faults.append(Fault(method, re.compile(path_regex), status, times))

    def hold(self, method: str, path_regex: str) -> Hold:
        """Stop the next matching request before its body is read; once `release` is set, close the
        connection without serving it, as when the client dies in the middle of sending it."""
        hold = Hold(method, re.compile(path_regex))
        with self._lock:
            self._holds.append(hold)
        return hold

    def count(self, method: str, path_regex: str, server: str | None = None) -> int:
        pattern = re.compile(path_regex)
        return sum(
            1
            for r in list(self.requests)
            if r.method == method and pattern.search(r.path) and (server is None or r.server == server)
        )

    def has_object(self, sha256: str) -> bool:
        return (self._root / "lfs" / sha256).is_file()

    def head(self, repo_id: str, branch: str = "main") -> Commit:
        repo = self.repos[repo_id]
        return repo.commits[repo.branches[branch]]

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.method == method and fault.pattern.search(path) and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def _take_hold(self, method: str, path: str) -> Hold | None:
        with self._lock:
            for hold in self._holds:
                if hold.method == method and hold.pattern.search(path) and not hold.reached.is_set():
                    hold.reached.set()
                    return hold
        return None

    # ------------------------------------------------------------ access

    def user(self, headers) -> str | None:
        auth = headers.get("Authorization", "")
        if not auth:
            return None
        token = auth.removeprefix("Bearer ").strip()
        if token not in self.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.tokens[token]

    def can_write(self, user: str | None, namespace: str) -> bool:
        return user is not None and (user == namespace or user in self.orgs.get(namespace, set()))

    def readable(self, repo_id: str, user: str | None) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and not self.can_write(user, repo_id.split("/")[0])):
            # the Hub answers 401 to anonymous callers and 404 to others, never telling a private repo exists
            raise HubError(401 if user is None else 404, "Repository not found", "RepoNotFound")
        return repo

    def writable(self, repo_id: str, user: str | None) -> Repo:
        repo = self.readable(repo_id, user)
        if user is None:
            raise HubError(401, "You must be authenticated to write to this repository")
        if not self.can_write(user, repo_id.split("/")[0]):
            raise HubError(403, f"You don't have the rights to write to {repo_id}")
        return repo

    def commit_of(self, repo: Repo, revision: str) -> Commit:
        revision = unquote(revision)
        oid = repo.branches.get(revision.removeprefix("refs/heads/"))
        if oid is None and revision in repo.commits:
            oid = revision
        if oid is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return repo.commits[oid]

    def sign(self, sha256: str) -> str:
        return hmac.new(self._secret, sha256.encode(), "sha256").hexdigest()

    # ------------------------------------------------------------ storage

    def store_blob(self, data: bytes) -> Entry:
        oid = git_blob_sha1(data)
        path = self._root / "blobs" / oid
        if not path.exists():
            path.write_bytes(data)
        return Entry(oid=oid, size=len(data))

    def read_blob(self, oid: str) -> bytes:
        return (self._root / "blobs" / oid).read_bytes()

    def object_path(self, sha256: str) -> Path:
        return self._root / "lfs" / sha256

    def new_commit(self, repo: Repo, parent: str | None, tree: dict[str, Entry], summary: str) -> Commit:
        date = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        listing = json.dumps({p: [e.oid, e.sha256] for p, e in sorted(tree.items())})
        body = f"tree {hashlib.sha1(listing.encode()).hexdigest()}\nparent {parent}\n{date} {time.time_ns()}\n\n{summary}"
        commit = Commit(oid=git_blob_sha1(body.encode()), parent=parent, tree=tree, summary=summary, date=date)
        repo.commits[commit.oid] = commit
        return commit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_name = "hub"

    @property
    def hub(self) -> HubServer:
        return self.server.hub

    def log_message(self, format, *args) -> None:  # the test output stays quiet
        pass

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except OSError:  # the client went away mid-request
            self.close_connection = True

    def _dispatch(self) -> None:
        self.status = 0
        self._body: bytes | None = None
        path = urlsplit(self.path).path
        try:
            fault = self.hub._take_fault(self.command, path)
            if fault is not None:
                self._discard_body()
                if fault.status is None:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    self.status = -1
                    return
                raise HubError(fault.status, "Service temporarily unavailable (injected fault)")
            hold = self.hub._take_hold(self.command, path)
            if hold is not None:
                # what the client had sent may sit whole in the socket buffers; a transfer cut off
                # mid-way never completes the object, so the request ends without being served
                hold.release.wait()
                self.close_connection = True
                self.status = -1
                return
            self.route(path)
        except HubError as error:
            self.send_error_json(error)
        finally:
            self.hub.requests.append(Logged(self.server_name, self.command, path, self.status))

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    # ------------------------------------------------------------ request and response helpers

    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query)

    def flag(self, name: str) -> bool:
        return self.query().get(name, [""])[0].lower() in ("1", "true")

    def body(self) -> bytes:
        if self._body is None:
            self._body = self._read_body()
        return self._body

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length)
        if len(data) != length:
            self.close_connection = True
            raise HubError(400, "request body ended early")
        return data

    def _discard_body(self) -> None:
        if self.command in ("POST", "PUT"):
            self.body()

    def json_body(self):
        try:
            return json.loads(self.body() or b"{}")
        except ValueError as error:
            raise HubError(400, f"invalid JSON: {error}") from error

    def send(self, status: int, data: bytes = b"", content_type: str = "application/json", headers: dict | None = None):
        self.status = status
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_json(self, value, status: int = 200, headers: dict | None = None) -> None:
        self.send(status, json.dumps(value).encode(), headers=headers)

    def send_error_json(self, error: HubError) -> None:
        headers = {"X-Error-Message": error.message, **error.headers}
        if error.code:
            headers["X-Error-Code"] = error.code
        if self.command in ("POST", "PUT") and not self.close_connection:
            # an answer before the body was read must still consume it, or the connection desyncs
            try:
                self._discard_body()
            except (HubError, ValueError, OSError):
                self.close_connection = True
                self._body = b""
        self.send_json({"error": error.message}, error.status, headers)


REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"


class _HubHandler(_Handler):
    server_name = "hub"

    def route(self, path: str) -> None:
        routes = [
            ("POST", r"/api/repos/create", self.create_repo),
            ("DELETE", r"/api/repos/delete", self.delete_repo),
            ("GET", r"/api/whoami-v2", self.whoami),
            ("GET", r"/api/agent-harnesses", self.agent_harnesses),
            ("POST", r"/api/validate-yaml", self.validate_yaml),
            ("GET", rf"/api/models/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<sub>.+))?", self.tree),
            ("POST", rf"/api/models/{REPO}/paths-info/(?P<rev>[^/]+)", self.paths_info),
            ("GET", rf"/api/models/{REPO}/refs", self.refs),
            ("POST", rf"/api/models/{REPO}/branch/(?P<branch>[^/]+)", self.create_branch),
            ("POST", rf"/api/models/{REPO}/preupload/(?P<rev>[^/]+)", self.preupload),
            ("POST", rf"/api/models/{REPO}/commit/(?P<rev>[^/]+)", self.commit),
            ("GET", rf"/api/models/{REPO}(?:/revision/(?P<rev>[^/]+))?", self.model_info),
            ("POST", rf"/{REPO}\.git/info/lfs/objects/batch", self.lfs_batch),
            ("POST", rf"/{REPO}\.git/info/lfs/objects/verify", self.lfs_verify),
            ("GET", rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", self.resolve),
            ("HEAD", rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", self.resolve),
        ]
        for method, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if match and method == self.command:
                kwargs = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                return handler(**kwargs)
        self._discard_body()
        raise HubError(404, f"no route for {self.command} {path}")

    # ------------------------------------------------------------ repos and users

    def create_repo(self) -> None:
        payload = self.json_body()
        user = self.hub.user(self.headers)
        if user is None:
            raise HubError(401, "You must be authenticated to create a repository")
        namespace = payload.get("organization") or user
        repo_id = f"{namespace}/{payload['name']}"
        if payload.get("type", "model") != "model":
            raise HubError(400, "this test server hosts model repos only")
        url = f"{self.hub.endpoint}/{repo_id}"
        if not self.hub.can_write(user, namespace):
            raise HubError(403, f'You don\'t have the rights to create a model under the namespace "{namespace}"')
        with self.hub._lock:
            if repo_id in self.hub.repos:
                return self.send_json({"error": "You already created this model repo", "url": url}, 409)
            private = payload.get("visibility") == "private" or bool(payload.get("private"))
            repo = Repo(repo_id=repo_id, private=private, created_at=time.strftime("%Y-%m-%dT%H:%M:%S.000Z"))
            first = self.hub.new_commit(repo, None, {".gitattributes": self.hub.store_blob(GITATTRIBUTES)}, "initial commit")
            repo.branches["main"] = first.oid
            self.hub.repos[repo_id] = repo
        self.send_json({"url": url, "name": repo_id, "id": hashlib.sha1(repo_id.encode()).hexdigest()[:24]})

    def delete_repo(self) -> None:
        payload = self.json_body()
        user = self.hub.user(self.headers)
        repo_id = f"{payload.get('organization') or user}/{payload['name']}"
        self.hub.writable(repo_id, user)
        with self.hub._lock:
            del self.hub.repos[repo_id]
        self.send(200, b"")

    def whoami(self) -> None:
        user = self.hub.user(self.headers)
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        orgs = [{"type": "org", "name": org} for org, members in self.hub.orgs.items() if user in members]
        self.send_json({"type": "user", "name": user, "orgs": orgs,
                        "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}}})

    def agent_harnesses(self) -> None:
        # the client fetches this registry once a day to name the agent in its user agent; none here
        self.send_json({"standardEnvVars": [], "harnesses": {}})

    def validate_yaml(self) -> None:
        content = self.json_body().get("content", "")
        match = re.match(r"^---\n(.*?)\n---\n", content, re.DOTALL)
        if match is None:
            return self.send_json({"errors": [], "warnings": [{"message": "empty or missing yaml metadata in repo card"}]})
        try:
            data = yaml.safe_load(match.group(1))
        except yaml.YAMLError as error:
            return self.send_json({"errors": [{"message": str(error)}]}, 400)
        if not isinstance(data, dict):
            return self.send_json({"errors": [{"message": "metadata must be a mapping"}]}, 400)
        self.send_json({"errors": [], "warnings": []})

    def model_info(self, repo: str, rev: str = "main") -> None:
        user = self.hub.user(self.headers)
        record = self.hub.readable(repo, user)
        commit = self.hub.commit_of(record, rev)
        card = _card_data(self.hub, commit)
        siblings = []
        for path, entry in sorted(commit.tree.items()):
            sibling = {"rfilename": path}
            if self.flag("blobs"):
                sibling.update(size=entry.size, blobId=entry.oid)
                if entry.sha256:
                    sibling["lfs"] = {"sha256": entry.sha256, "size": entry.size,
                                      "pointerSize": len(lfs_pointer(entry.sha256, entry.size))}
            siblings.append(sibling)
        tags = list(card.get("tags") or [])
        bases = card.get("base_model") or []
        tags += [f"base_model:{b}" for b in ([bases] if isinstance(bases, str) else bases)]
        self.send_json({
            "_id": hashlib.sha1(repo.encode()).hexdigest()[:24], "id": repo, "modelId": repo,
            "author": repo.split("/")[0], "sha": commit.oid, "lastModified": commit.date,
            "createdAt": record.created_at, "private": record.private, "disabled": False, "gated": False,
            "downloads": 0, "likes": 0, "tags": tags, "library_name": card.get("library_name"),
            "pipeline_tag": card.get("pipeline_tag"), "cardData": card or None, "siblings": siblings,
        })

    def tree(self, repo: str, rev: str, sub: str = "") -> None:
        record = self.hub.readable(repo, self.hub.user(self.headers))
        commit = self.hub.commit_of(record, rev)
        prefix = sub.strip("/") + "/" if sub.strip("/") else ""
        if prefix and not any(p.startswith(prefix) for p in commit.tree):
            raise HubError(404, f"{sub} does not exist on {rev}", "EntryNotFound")
        recursive = self.flag("recursive")
        items, folders = [], set()
        for path, entry in sorted(commit.tree.items()):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix):].split("/")
            for depth in range(1, len(parts) if recursive else min(len(parts), 2)):
                folders.add(prefix + "/".join(parts[:depth]))
            if recursive or len(parts) == 1:
                items.append(entry.as_json(path))
        items += [_folder_json(commit, folder) for folder in sorted(folders)]
        self.send_json(items)

    def paths_info(self, repo: str, rev: str) -> None:
        form = parse_qs(self.body().decode())
        record = self.hub.readable(repo, self.hub.user(self.headers))
        commit = self.hub.commit_of(record, rev)
        items = []
        for path in form.get("paths", []):
            if path in commit.tree:
                items.append(commit.tree[path].as_json(path))
            elif any(p.startswith(path.rstrip("/") + "/") for p in commit.tree):
                items.append(_folder_json(commit, path.rstrip("/")))
        self.send_json(items)

    def refs(self, repo: str) -> None:
        record = self.hub.readable(repo, self.hub.user(self.headers))
        branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": c} for n, c in sorted(record.branches.items())]
        self.send_json({"branches": branches, "converts": [], "tags": [], "pullRequests": []})

    def create_branch(self, repo: str, branch: str) -> None:
        payload = self.json_body()
        record = self.hub.writable(repo, self.hub.user(self.headers))
        with self.hub._lock:
            if branch in record.branches:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            start = self.hub.commit_of(record, payload.get("startingPoint") or "main")
            record.branches[branch] = start.oid
        self.send_json({})

    # ------------------------------------------------------------ uploads

    def preupload(self, repo: str, rev: str) -> None:
        payload = self.json_body()
        record = self.hub.writable(repo, self.hub.user(self.headers))
        commit = self.hub.commit_of(record, rev)
        attributes = commit.tree.get(".gitattributes")
        patterns = _lfs_patterns(self.hub.read_blob(attributes.oid)) if attributes else []
        files = []
        for item in payload.get("files", []):
            sample = base64.b64decode(item.get("sample", ""))
            lfs = item["size"] > REGULAR_LIMIT or b"\0" in sample or any(
                fnmatch.fnmatch(item["path"].split("/")[-1], p) or fnmatch.fnmatch(item["path"], p) for p in patterns
            )
            existing = commit.tree.get(item["path"])
            oid = None
            if existing is not None:
                oid = existing.sha256 if lfs and existing.sha256 else existing.oid
            files.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        self.send_json({"files": files, "commitOid": commit.oid})

    def commit(self, repo: str, rev: str) -> None:
        lines = [json.loads(line) for line in self.body().splitlines() if line.strip()]
        record = self.hub.writable(repo, self.hub.user(self.headers))
        if self.flag("create_pr"):
            raise HubError(400, "this test server does not open pull requests")
        header = next((line["value"] for line in lines if line["key"] == "header"), None)
        if header is None or not header.get("summary"):
            raise HubError(400, "commit header with a summary is required")
        with self.hub._lock:
            head = self.hub.commit_of(record, rev)
            parent = header.get("parentCommit")
            if parent and not head.oid.startswith(parent):
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            tree = dict(head.tree)
            for line in lines:
                key, value = line["key"], line["value"]
                if key == "file":
                    tree[value["path"]] = self.hub.store_blob(base64.b64decode(value["content"]))
                elif key == "lfsFile":
                    path = self.hub.object_path(value["oid"])
                    if not path.is_file():
                        raise HubError(422, f"Your push was rejected because an LFS pointer pointed to a file that "
                                            f"does not exist: {value['oid']}")
                    size = path.stat().st_size
                    tree[value["path"]] = Entry(git_blob_sha1(lfs_pointer(value["oid"], size)), size, value["oid"])
                elif key == "deletedFile":
                    if tree.pop(value["path"], None) is None:
                        raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    tree = {p: e for p, e in tree.items() if not p.startswith(prefix)}
                elif key != "header":
                    raise HubError(400, f"unknown commit operation {key}")
            commit = self.hub.new_commit(record, head.oid, tree, header["summary"])
            record.branches[unquote(rev).removeprefix("refs/heads/")] = commit.oid
        self.send_json({"success": True, "commitOid": commit.oid,
                        "commitUrl": f"{self.hub.endpoint}/{repo}/commit/{commit.oid}", "hookOutput": ""})

    def lfs_batch(self, repo: str) -> None:
        payload = self.json_body()
        self.hub.writable(repo, self.hub.user(self.headers))
        if payload.get("operation") != "upload":
            raise HubError(422, "this test server accepts LFS uploads only")
        if "basic" not in payload.get("transfers", ["basic"]):
            raise HubError(422, "only the basic transfer is offered")
        objects = []
        for item in payload.get("objects", []):
            oid, size = item["oid"], item["size"]
            answer = {"oid": oid, "size": size, "authenticated": True}
            if not re.fullmatch(r"[0-9a-f]{64}", oid):
                answer["error"] = {"code": 422, "message": "oid must be a sha256 hex digest"}
            elif not self.hub.has_object(oid):
                href = f"{self.hub.storage}/upload/{oid}?size={size}&sig={self.hub.sign(oid)}"
                answer["actions"] = {
                    "upload": {"href": href, "header": {}, "expires_in": 3600},
                    "verify": {"href": f"{self.hub.endpoint}/{repo}.git/info/lfs/objects/verify", "header": {}},
                }
            objects.append(answer)
        self.send_json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                       headers={"Content-Type": "application/vnd.git-lfs+json"})

    def lfs_verify(self, repo: str) -> None:
        payload = self.json_body()
        self.hub.writable(repo, self.hub.user(self.headers))
        path = self.hub.object_path(payload.get("oid", ""))
        if not path.is_file() or path.stat().st_size != payload.get("size"):
            raise HubError(404, "object not found or size mismatch")
        self.send_json({})

    # ------------------------------------------------------------ downloads

    def resolve(self, repo: str, rev: str, file: str) -> None:
        record = self.hub.readable(repo, self.hub.user(self.headers))
        commit = self.hub.commit_of(record, rev)
        entry = commit.tree.get(file)
        if entry is None:
            raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        headers = {"X-Repo-Commit": commit.oid, "Accept-Ranges": "bytes"}
        if entry.sha256 is not None:
            location = f"{self.hub.storage}/objects/{entry.sha256}?sig={self.hub.sign(entry.sha256)}"
            headers.update({"Location": location, "ETag": f'"{entry.oid}"',
                            "X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": entry.size})
            return self.send(302, b"", "text/plain", headers)
        headers["ETag"] = f'"{entry.oid}"'
        _send_range(self, self.hub.read_blob(entry.oid), headers)


class _StorageHandler(_Handler):
    server_name = "storage"

    def route(self, path: str) -> None:
        match = re.fullmatch(r"/(upload|objects)/([0-9a-f]{64})", path)
        if match is None or self.query().get("sig", [""])[0] != self.hub.sign(match.group(2)):
            self._discard_body()
            raise HubError(403, "Request has expired or the signature does not match")
        kind, sha256 = match.groups()
        if kind == "upload" and self.command == "PUT":
            return self.upload(sha256, int(self.query()["size"][0]))
        if kind == "objects" and self.command in ("GET", "HEAD"):
            return _send_range(self, self.hub.object_path(sha256).read_bytes(), {"ETag": f'"{sha256}"'})
        self._discard_body()
        raise HubError(405, "method not allowed")

    def upload(self, sha256: str, size: int) -> None:
        data = self.body()
        if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
            raise HubError(400, "content does not match the announced sha256 and size")
        target = self.hub.object_path(sha256)
        partial = target.with_name(f".{sha256}.{threading.get_ident()}")
        partial.write_bytes(data)
        partial.replace(target)
        self.send(200, b"", "text/plain", {"ETag": f'"{hashlib.md5(data).hexdigest()}"'})


def _send_range(handler: _Handler, data: bytes, headers: dict) -> None:
    match = re.fullmatch(r"bytes=(\d+)-(\d*)", handler.headers.get("Range", ""))
    if match is None:
        return handler.send(200, data, "application/octet-stream", headers)
    start = int(match.group(1))
    end = int(match.group(2)) if match.group(2) else len(data) - 1
    if start >= len(data):
        return handler.send(416, b"", "text/plain", {**headers, "Content-Range": f"bytes */{len(data)}"})
    part = data[start : end + 1]
    handler.send(206, part, "application/octet-stream",
                 {**headers, "Content-Range": f"bytes {start}-{start + len(part) - 1}/{len(data)}"})


def _folder_json(commit: Commit, folder: str) -> dict:
    inside = sorted((p, e.oid) for p, e in commit.tree.items() if p.startswith(folder + "/"))
    return {"type": "directory", "oid": hashlib.sha1(json.dumps(inside).encode()).hexdigest(), "size": 0, "path": folder}


def _lfs_patterns(gitattributes: bytes) -> list[str]:
    return [line.split()[0] for line in gitattributes.decode().splitlines() if "filter=lfs" in line]


def _card_data(hub: HubServer, commit: Commit) -> dict:
    """The README's YAML metadata, which the Hub parses and serves as cardData."""
    entry = commit.tree.get("README.md")
    if entry is None or entry.sha256 is not None:
        return {}
    match = re.match(r"^---\n(.*?)\n---\n", hub.read_blob(entry.oid).decode(errors="replace"), re.DOTALL)
    try:
        data = yaml.safe_load(match.group(1)) if match else {}
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}



def client_env(hub: HubServer | None, home: Path, token: str | None = None, endpoint: str | None = None) -> dict:
    """Environment for a client process talking to `hub`: huggingface_hub reads HF_ENDPOINT and
    HF_HUB_DISABLE_XET when imported, so client steps run in a subprocess started with these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=endpoint or hub.endpoint, HF_HOME=str(home), HF_HUB_DISABLE_XET="1",
               HF_HUB_DISABLE_TELEMETRY="1")
    if token is not None:
        env["HF_TOKEN"] = token
    return env
