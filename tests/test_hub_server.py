"""The local Hub stand-in speaks the protocol the official client expects: checked with huggingface_hub
itself (reads and regular-file commits run in this process: they do not touch Xet) and, for the LFS
transfer the client only makes with HF_HUB_DISABLE_XET set at import, with raw HTTP."""

import base64
import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from hub_server import HubServer, git_blob_sha1
from huggingface_hub import (
    CommitOperationAdd,
    HfApi,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)


@pytest.fixture
def hub():
    with HubServer(tokens={"tok-alice": "alice", "tok-bob": "bob"}) as server:
        yield server


def http(method, url, body=None, headers=None):
    """(status, headers, body) of one raw request; redirects are not followed."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args):
            return None

    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.build_opener(NoRedirect).open(request) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def ndjson(*items) -> bytes:
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


def test_regular_commit_and_reads_through_the_client(hub, tmp_path):
    api = HfApi(endpoint=hub.endpoint, token="tok-alice")
    assert api.create_repo("alice/m") == f"{hub.endpoint}/alice/m"
    with pytest.raises(HfHubHTTPError) as taken:
        api.create_repo("alice/m")
    assert taken.value.response.status_code == 409
    assert api.create_repo("alice/m", exist_ok=True) == f"{hub.endpoint}/alice/m"

    card = "---\nlicense: mit\ntags:\n- demo\n---\n# m\n"
    info = api.create_commit("alice/m", [CommitOperationAdd("README.md", card.encode()),
                                         CommitOperationAdd("sub/a.txt", b"hello")], commit_message="add")
    assert len(info.oid) == 40
    model = api.model_info("alice/m", files_metadata=True)
    assert model.sha == info.oid and model.card_data.license == "mit" and "demo" in model.tags
    sizes = {s.rfilename: s.size for s in model.siblings}
    assert sizes == {".gitattributes": sizes[".gitattributes"], "README.md": len(card), "sub/a.txt": 5}
    assert sorted(api.list_repo_files("alice/m")) == [".gitattributes", "README.md", "sub/a.txt"]
    top = {entry.path for entry in api.list_repo_tree("alice/m")}
    assert top == {".gitattributes", "README.md", "sub"}

    meta = get_hf_file_metadata(hf_hub_url("alice/m", "sub/a.txt", endpoint=hub.endpoint), token="tok-alice")
    assert meta.etag == git_blob_sha1(b"hello") and meta.commit_hash == info.oid and meta.size == 5
    path = hf_hub_download("alice/m", "sub/a.txt", endpoint=hub.endpoint, token="tok-alice", cache_dir=tmp_path)
    assert Path(path).read_bytes() == b"hello"

    # unchanged content: the client's preupload sees the remote oid and makes no commit
    again = api.create_commit("alice/m", [CommitOperationAdd("sub/a.txt", b"hello")], commit_message="same")
    assert again.oid == info.oid and hub.count("POST", "/commit/") == 1

    with pytest.raises(RevisionNotFoundError):
        api.model_info("alice/m", revision="nope")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("alice/m", "missing.txt", endpoint=hub.endpoint, token="tok-alice", cache_dir=tmp_path)
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree("alice/m", path_in_repo="additional_chat_templates"))

    api.create_branch("alice/m", branch="dev")
    assert {b.name for b in api.list_repo_refs("alice/m").branches} == {"main", "dev"}
    api.delete_repo("alice/m")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("alice/m")


def test_lfs_upload_checks_sha256_and_resolve_redirects(hub):
    api = HfApi(endpoint=hub.endpoint, token="tok-alice")
    api.create_repo("alice/w")
    auth = {"Authorization": "Bearer tok-alice"}
    data = bytes(range(256)) * 1000
    oid = hashlib.sha256(data).hexdigest()

    upload = http("POST", f"{hub.endpoint}/api/models/alice/w/preupload/main", {"files": [
        {"path": "w.safetensors", "sample": base64.b64encode(b"{}").decode(), "size": len(data)},
        {"path": "notes.txt", "sample": base64.b64encode(b"text").decode(), "size": 4},
        {"path": "blob", "sample": base64.b64encode(b"a\0b").decode(), "size": 3},
    ]}, auth)
    modes = {f["path"]: f["uploadMode"] for f in json.loads(upload[2])["files"]}
    assert modes == {"w.safetensors": "lfs", "notes.txt": "regular", "blob": "lfs"}

    batch = {"operation": "upload", "transfers": ["basic", "multipart"], "hash_algo": "sha256",
             "objects": [{"oid": oid, "size": len(data)}]}
    status, _, body = http("POST", f"{hub.endpoint}/alice/w.git/info/lfs/objects/batch", batch, auth)
    action = json.loads(body)["objects"][0]["actions"]["upload"]
    assert status == 200 and action["href"].startswith(hub.storage)

    assert http("PUT", action["href"], data[:-1] + b"x")[0] == 400  # wrong content is refused
    assert http("PUT", action["href"].replace("sig=", "sig=0"), data)[0] == 403
    assert not hub.has_object(oid)
    commit = ndjson({"key": "header", "value": {"summary": "w"}},
                    {"key": "lfsFile", "value": {"path": "w.safetensors", "algo": "sha256", "oid": oid, "size": len(data)}})
    headers = {**auth, "Content-Type": "application/x-ndjson"}
    assert http("POST", f"{hub.endpoint}/api/models/alice/w/commit/main", commit, headers)[0] == 422

    assert http("PUT", action["href"], data)[0] == 200
    status, _, body = http("POST", f"{hub.endpoint}/alice/w.git/info/lfs/objects/batch", batch, auth)
    assert "actions" not in json.loads(body)["objects"][0]  # already stored: nothing to send
    status, _, body = http("POST", f"{hub.endpoint}/api/models/alice/w/commit/main", commit, headers)
    assert status == 200 and json.loads(body)["commitOid"] == hub.head("alice/w").oid

    status, got, _ = http("HEAD", f"{hub.endpoint}/alice/w/resolve/main/w.safetensors")
    assert status == 302 and got["Location"].startswith(hub.storage)
    assert got["X-Linked-Etag"] == f'"{oid}"' and int(got["X-Linked-Size"]) == len(data)
    assert got["X-Repo-Commit"] == hub.head("alice/w").oid
    assert http("GET", got["Location"])[2] == data
    status, _, part = http("GET", got["Location"], headers={"Range": "bytes=1000-"})
    assert status == 206 and part == data[1000:]


def test_access_rules(hub):
    alice = HfApi(endpoint=hub.endpoint, token="tok-alice")
    bob = HfApi(endpoint=hub.endpoint, token="tok-bob")
    alice.create_repo("alice/secret", private=True)
    alice.create_repo("alice/open")
    with pytest.raises(RepositoryNotFoundError):
        bob.model_info("alice/secret")
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.endpoint, token=False).model_info("alice/secret")
    assert bob.model_info("alice/open").id == "alice/open"
    with pytest.raises(HfHubHTTPError) as denied:
        bob.create_commit("alice/open", [CommitOperationAdd("x.txt", b"x")], commit_message="x")
    assert denied.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as denied:
        bob.create_repo("alice/other")
    assert denied.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as refused:
        HfApi(endpoint=hub.endpoint, token="stolen").whoami()
    assert refused.value.response.status_code == 401
    assert alice.whoami()["name"] == "alice"
