"""A Hub-compatible HTTP server for tests: the real `huggingface_hub` client, unchanged, talks to it.

No machine of this project reaches huggingface.co, so the push / pull tests point `HF_ENDPOINT` at this
server, started on 127.0.0.1 in a background thread. It implements the part of the Hub API that
`huggingface_hub` (>= 1.0, tested with 2.4) uses for

- `create_repo` / `delete_repo` / `whoami`                     (`/api/repos/create`, `/api/repos/delete`, `/api/whoami-v2`)
- `create_commit` / `upload_folder` / `upload_file` / `push_to_hub`:
  `POST /api/{type}s/{repo}/preupload/{rev}` (answers `lfs` for the LFS patterns of the repository's
  `.gitattributes`, binary samples and files of `lfs_threshold` bytes or more, `regular` otherwise),
  the git-LFS batch API `POST /{repo}.git/info/lfs/objects/batch` ("basic" transfer: a `PUT` of the
  whole object, then a `verify` POST), and `POST /api/{type}s/{repo}/commit/{rev}` (NDJSON lines
  `header` / `file` / `lfsFile` / `deletedFile` / `deletedFolder`);
- `create_branch` / `delete_branch` / `create_tag` / `delete_tag` / `list_repo_refs` / `list_repo_commits`;
- `model_info` / `repo_info` (`GET /api/{type}s/{repo}` and `.../revision/{rev}`), `list_repo_files` /
  `list_repo_tree` (`GET /api/{type}s/{repo}/tree/{rev}/{path}`), `get_paths_info`;
- `hf_hub_download` / `snapshot_download` / `file_exists` (`HEAD` and `GET /{repo}/resolve/{rev}/{path}`
  with `ETag`, `X-Repo-Commit`, `Content-Length`, `X-Linked-Etag` / `X-Linked-Size` for LFS files and
  byte ranges), and `POST /api/validate-yaml` (the README metadata check `create_commit` runs).

Semantics follow the Hub: a new repository has one commit holding the default `.gitattributes`; a
commit is atomic (it is validated entirely -- every LFS object uploaded, every deleted path present,
`parentCommit` still the head -- before the branch moves, under one lock); revisions are branch names,
tag names, `refs/pr/N`, full commit shas or unique sha prefixes of 7+ characters; errors carry the
`X-Error-Code` header the client maps to `RepositoryNotFoundError` (`RepoNotFound`),
`RevisionNotFoundError` (`RevisionNotFound`) and `EntryNotFoundError` (`EntryNotFound`).

Writes need an `Authorization: Bearer <anything>` header (set `HF_TOKEN` to any string); reads of
public repositories do not. Files are served directly (no redirect to a CDN), as a Hub mirror does.
Xet storage is not implemented: clients must run with `HF_HUB_DISABLE_XET=1`.

Usage::

    with HubServer() as server:
        os.environ["HF_ENDPOINT"] = server.url
        ...
        server.list_files("user/repo")            # inspect what landed, without the client
"""

from __future__ import annotations

import base64
import datetime as _dt
import fnmatch
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml


__all__ = ["DEFAULT_GITATTRIBUTES", "DEFAULT_USER", "HubServer", "HubError"]

DEFAULT_USER = "vlmixer-tester"
REPO_TYPES = ("model", "dataset", "space")
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
_SHORT_SHA = re.compile(r"^[0-9a-f]{7,40}$")
_LFS_CONTENT_TYPE = "application/vnd.git-lfs+json"

# The `.gitattributes` the Hub puts in the first commit of every new model repository.
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z",
        "*.arrow",
        "*.bin",
        "*.bz2",
        "*.ckpt",
        "*.ftz",
        "*.gz",
        "*.h5",
        "*.joblib",
        "*.lfs.*",
        "*.mlmodel",
        "*.model",
        "*.msgpack",
        "*.npy",
        "*.npz",
        "*.onnx",
        "*.ot",
        "*.parquet",
        "*.pb",
        "*.pickle",
        "*.pkl",
        "*.pt",
        "*.pth",
        "*.rar",
        "*.safetensors",
        "saved_model/**/*",
        "*.tar.*",
        "*.tar",
        "*.tflite",
        "*.tgz",
        "*.wasm",
        "*.xz",
        "*.zip",
        "*.zst",
        "*tfevents*",
    )
)


class HubError(Exception):
    """An HTTP error answer: status, `X-Error-Code`, message (sent as JSON `{"error": ...}`)."""

    def __init__(self, status: int, message: str, error_code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.error_code = status, message, error_code
        self.headers = headers or {}


@dataclass(frozen=True)
class _Entry:
    """A file of a commit: its git blob id, size and, for LFS files, the sha256 of the content."""

    size: int
    git_oid: str
    lfs_sha256: str | None = None

    @property
    def etag(self) -> str:
        return self.lfs_sha256 or self.git_oid


@dataclass
class _Commit:
    oid: str
    parents: list[str]
    title: str
    message: str
    date: str
    files: dict[str, _Entry]


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    commits: dict[str, _Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)  # includes refs/pr/N
    tags: dict[str, str] = field(default_factory=dict)
    num_prs: int = 0


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _lfs_patterns(gitattributes: bytes | None) -> list[str]:
    if not gitattributes:
        return []
    patterns = []
    for line in gitattributes.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and not parts[0].startswith("#") and "filter=lfs" in parts[1:]:
            patterns.append(parts[0])
    return patterns


def _matches(path: str, pattern: str) -> bool:
    pattern = pattern.lstrip("/")
    if "/" not in pattern:
        return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern)
    return fnmatch.fnmatchcase(path, pattern.replace("**/", "*"))


def _front_matter(readme: bytes) -> dict | None:
    """The YAML metadata block of a README, `None` if it has none; raises `ValueError` if it is invalid."""
    text = readme.decode("utf-8-sig")
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, flags=re.DOTALL)
    if match is None:
        return None
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as error:
        raise ValueError(f"Invalid YAML in README.md metadata: {error}") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("README.md metadata must be a YAML mapping.")
    return data


class HubServer:
    """In-memory Hub. `start()` (or `with`) serves it on `host:port` (port 0 = any free port).

    Args:
        host: Interface to bind (default `127.0.0.1`).
        port: Port, 0 for a free one.
        lfs_threshold: Files of at least this many bytes are uploaded through LFS even when no
            `.gitattributes` pattern matches (the Hub's limit for regular files is 10 MB).
        user: Name `whoami` returns, and the namespace of repositories created without one.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        lfs_threshold: int = 10 * 1024 * 1024,
        user: str = DEFAULT_USER,
    ):
        self.host, self.port, self.lfs_threshold, self.user = host, port, lfs_threshold, user
        self._lock = threading.RLock()
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._git_blobs: dict[str, bytes] = {}
        self._lfs_objects: dict[str, bytes] = {}
        self._counter = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        #: Every request served, as `(method, path)` (path without the query string), in order.
        self.requests: list[tuple[str, str]] = []
        #: Every LFS object received by `PUT`, as `(sha256, size)`.
        self.lfs_uploads: list[tuple[str, int]] = []

    # ------------------------------------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("The server is not started.")
        return f"http://{self.host}:{self._httpd.server_address[1]}"

    def start(self) -> HubServer:
        handler = type("HubRequestHandler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=10)
            self._httpd = self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------ inspection API

    def repo_exists(self, repo_id: str, repo_type: str = "model") -> bool:
        with self._lock:
            return (repo_type, repo_id) in self._repos

    def resolve(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> str:
        """The commit sha `revision` (branch, tag, sha or sha prefix) points to."""
        with self._lock:
            return self._resolve(self._get_repo(repo_type, repo_id), revision).oid

    def list_files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> list[str]:
        with self._lock:
            return sorted(self._resolve(self._get_repo(repo_type, repo_id), revision).files)

    def read_file(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "model") -> bytes:
        with self._lock:
            commit = self._resolve(self._get_repo(repo_type, repo_id), revision)
            if path not in commit.files:
                raise KeyError(f"{path} is not in {repo_id}@{revision}")
            return self._content(commit.files[path])

    def is_lfs(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "model") -> bool:
        with self._lock:
            commit = self._resolve(self._get_repo(repo_type, repo_id), revision)
            return commit.files[path].lfs_sha256 is not None

    def commit_history(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> list[dict]:
        """Commits reachable from `revision`, newest first, as `{"oid", "title", "message", "files"}`."""
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            return [
                {"oid": c.oid, "title": c.title, "message": c.message, "files": sorted(c.files)}
                for c in self._history(repo, self._resolve(repo, revision).oid)
            ]

    # ------------------------------------------------------------------------------------- state helpers

    def _get_repo(self, repo_type: str, repo_id: str, token: str | None = None, write: bool = False) -> _Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None or (repo.private and token is None and not write):
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    def _resolve(self, repo: _Repo, revision: str) -> _Commit:
        oid = repo.branches.get(revision) or repo.tags.get(revision)
        if oid is None and _SHORT_SHA.match(revision):
            matches = [sha for sha in repo.commits if sha.startswith(revision)]
            if len(matches) == 1:
                oid = matches[0]
        if oid is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return repo.commits[oid]

    def _history(self, repo: _Repo, oid: str) -> list[_Commit]:
        history = []
        while oid is not None:
            commit = repo.commits[oid]
            history.append(commit)
            oid = commit.parents[0] if commit.parents else None
        return history

    def _content(self, entry: _Entry) -> bytes:
        if entry.lfs_sha256 is not None:
            return self._lfs_objects[entry.lfs_sha256]
        return self._git_blobs[entry.git_oid]

    def _store_regular(self, data: bytes) -> _Entry:
        oid = _git_blob_oid(data)
        self._git_blobs[oid] = data
        return _Entry(size=len(data), git_oid=oid)

    def _lfs_entry(self, sha256: str, size: int) -> _Entry:
        pointer = _lfs_pointer(sha256, size)
        return _Entry(size=size, git_oid=_git_blob_oid(pointer), lfs_sha256=sha256)

    def _new_commit(
        self, repo: _Repo, parent: str | None, files: dict[str, _Entry], title: str, message: str
    ):
        self._counter += 1
        date = _now()
        payload = json.dumps(
            [
                repo.repo_id,
                parent,
                title,
                message,
                date,
                self._counter,
                sorted((p, e.git_oid) for p, e in files.items()),
            ]
        )
        oid = hashlib.sha1(payload.encode()).hexdigest()
        repo.commits[oid] = _Commit(oid, [parent] if parent else [], title, message, date, files)
        return repo.commits[oid]

    def _base_url(self, handler: BaseHTTPRequestHandler) -> str:
        host = handler.headers.get("Host") or f"{self.host}:{self._httpd.server_address[1]}"
        return f"http://{host}"

    def _repo_url(self, base: str, repo: _Repo) -> str:
        return f"{base}/{_URL_PREFIX[repo.repo_type]}{repo.repo_id}"

    # --------------------------------------------------------------------------------------- endpoints

    def create_repo(self, body: dict, base: str) -> tuple[int, dict]:
        name, organization = body.get("name"), body.get("organization")
        repo_type = body.get("type") or "model"
        if not name or repo_type not in REPO_TYPES:
            raise HubError(400, f"Invalid repo name or type: {name!r}, {repo_type!r}")
        if "/" in name:
            organization, name = name.split("/", 1)
        repo_id = f"{organization or self.user}/{name}"
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id) or ".." in repo_id:
            raise HubError(400, f"Invalid repo id: {repo_id!r}")
        private = body.get("private") or body.get("visibility") == "private"
        with self._lock:
            existing = self._repos.get((repo_type, repo_id))
            if existing is not None:
                raise HubError(
                    409,
                    "You already created this repo",
                    headers={"X-Repo-Url": self._repo_url(base, existing)},
                )
            repo = _Repo(repo_type, repo_id, bool(private), _now())
            files = {".gitattributes": self._store_regular(DEFAULT_GITATTRIBUTES.encode())}
            commit = self._new_commit(repo, None, files, "initial commit", "")
            repo.branches["main"] = commit.oid
            self._repos[(repo_type, repo_id)] = repo
            return 200, {"url": self._repo_url(base, repo), "name": repo_id, "id": repo_id}

    def delete_repo(self, body: dict) -> tuple[int, dict]:
        name, organization = body.get("name") or "", body.get("organization")
        repo_id = name if "/" in name else f"{organization or self.user}/{name}"
        repo_type = body.get("type") or "model"
        with self._lock:
            self._get_repo(repo_type, repo_id, write=True)
            del self._repos[(repo_type, repo_id)]
        return 200, {}

    def repo_info(self, repo: _Repo, revision: str, params: dict) -> dict:
        commit = self._resolve(repo, revision)
        with_blobs = params.get("blobs", ["false"])[-1].lower() in ("1", "true")
        siblings = []
        for path, entry in sorted(commit.files.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if with_blobs:
                sibling.update(size=entry.size, blobId=entry.git_oid)
                if entry.lfs_sha256:
                    pointer_size = len(_lfs_pointer(entry.lfs_sha256, entry.size))
                    sibling["lfs"] = {
                        "sha256": entry.lfs_sha256,
                        "size": entry.size,
                        "pointerSize": pointer_size,
                    }
            siblings.append(sibling)
        info: dict[str, Any] = {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(e.size for e in commit.files.values()),
        }
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
        if "README.md" in commit.files:
            try:
                card = _front_matter(self._content(commit.files["README.md"]))
            except ValueError:
                card = None
            if card:
                info["cardData"] = card
                for key in ("library_name", "pipeline_tag"):
                    if key in card:
                        info[key] = card[key]
                if isinstance(card.get("tags"), list):
                    info["tags"] = list(card["tags"])
                if "model-index" in card:
                    info["model-index"] = card["model-index"]
        if "config.json" in commit.files:
            try:
                config = json.loads(self._content(commit.files["config.json"]))
                info["config"] = {
                    key: config[key] for key in ("architectures", "model_type", "auto_map") if key in config
                }
            except ValueError:
                pass
        return info

    def tree(self, repo: _Repo, revision: str, path: str, params: dict) -> list[dict]:
        commit = self._resolve(repo, revision)
        recursive = params.get("recursive", ["false"])[-1].lower() in ("1", "true")
        path = path.strip("/")
        prefix = f"{path}/" if path else ""
        if path and path in commit.files:
            return [self._file_info(path, commit.files[path])]
        below = {p: e for p, e in commit.files.items() if p.startswith(prefix)}
        if path and not below:
            raise HubError(
                404, f"{path} does not exist on {revision}", "EntryNotFound", {"X-Repo-Commit": commit.oid}
            )
        entries: dict[str, dict] = {}
        for file_path, entry in sorted(below.items()):
            rest = file_path[len(prefix) :]
            parts = rest.split("/")
            for depth in range(1, len(parts)):
                folder = prefix + "/".join(parts[:depth])
                if folder not in entries and (recursive or depth == 1):
                    entries[folder] = self._folder_info(folder, commit)
                if not recursive:
                    break
            if recursive or len(parts) == 1:
                entries[file_path] = self._file_info(file_path, entry)
        return list(entries.values())

    def paths_info(self, repo: _Repo, revision: str, paths: list[str]) -> list[dict]:
        commit = self._resolve(repo, revision)
        out = []
        for path in paths:
            path = path.strip("/")
            if path in commit.files:
                out.append(self._file_info(path, commit.files[path]))
            elif any(p.startswith(path + "/") for p in commit.files):
                out.append(self._folder_info(path, commit))
        return out

    @staticmethod
    def _file_info(path: str, entry: _Entry) -> dict:
        info: dict[str, Any] = {"type": "file", "oid": entry.git_oid, "size": entry.size, "path": path}
        if entry.lfs_sha256:
            pointer_size = len(_lfs_pointer(entry.lfs_sha256, entry.size))
            info["lfs"] = {"oid": entry.lfs_sha256, "size": entry.size, "pointerSize": pointer_size}
        return info

    @staticmethod
    def _folder_info(path: str, commit: _Commit) -> dict:
        children = sorted((p, e.git_oid) for p, e in commit.files.items() if p.startswith(path + "/"))
        oid = hashlib.sha1(json.dumps(children).encode()).hexdigest()
        return {"type": "directory", "oid": oid, "size": 0, "path": path}

    def preupload(self, repo: _Repo, revision: str, body: dict) -> dict:
        commit = self._resolve(repo, revision)
        gitattributes = commit.files.get(".gitattributes")
        patterns = _lfs_patterns(self._content(gitattributes) if gitattributes else None)
        ignore_text = body.get("gitIgnore")
        if ignore_text is None and ".gitignore" in commit.files:
            ignore_text = self._content(commit.files[".gitignore"]).decode("utf-8", "replace")
        ignores = [
            line.strip()
            for line in (ignore_text or "").splitlines()
            if line.strip() and not line.startswith("#")
        ]
        answers = []
        for file in body.get("files", []):
            path, size = file["path"], int(file.get("size", 0))
            sample = base64.b64decode(file.get("sample", ""))
            is_lfs = size > 0 and (
                size >= self.lfs_threshold or b"\0" in sample or any(_matches(path, p) for p in patterns)
            )
            existing = commit.files.get(path)
            oid = None
            if existing is not None:
                oid = existing.lfs_sha256 if is_lfs else (None if existing.lfs_sha256 else existing.git_oid)
            answers.append(
                {
                    "path": path,
                    "uploadMode": "lfs" if is_lfs else "regular",
                    "shouldIgnore": any(_matches(path, p) for p in ignores),
                    "oid": oid,
                }
            )
        return {"files": answers, "commitOid": commit.oid}

    def lfs_batch(self, repo: _Repo, body: dict, base: str) -> dict:
        if body.get("operation") not in ("upload", "download"):
            raise HubError(400, f"Unsupported LFS operation {body.get('operation')!r}")
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj.get("oid"), obj.get("size")
            if (
                not isinstance(oid, str)
                or not re.fullmatch(r"[0-9a-f]{64}", oid)
                or not isinstance(size, int)
            ):
                raise HubError(422, f"Invalid LFS object {obj!r}")
            answer: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            stored = self._lfs_objects.get(oid)
            if body["operation"] == "download":
                if stored is None:
                    answer["error"] = {"code": 404, "message": "Object does not exist"}
                else:
                    answer["actions"] = {"download": {"href": f"{base}/__lfs__/{oid}", "header": {}}}
            elif stored is None or len(stored) != size:
                answer["actions"] = {
                    "upload": {"href": f"{base}/__lfs__/{oid}", "header": {}},
                    "verify": {"href": f"{base}/__lfs__/verify", "header": {}},
                }
            objects.append(answer)
        return {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}

    def lfs_put(self, oid: str, data: bytes) -> None:
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubError(400, f"Uploaded content does not match its oid {oid}")
        with self._lock:
            self._lfs_objects[oid] = data
            self.lfs_uploads.append((oid, len(data)))

    def lfs_verify(self, body: dict) -> dict:
        stored = self._lfs_objects.get(body.get("oid"))
        if stored is None or len(stored) != body.get("size"):
            raise HubError(404, f"LFS object {body.get('oid')} was not uploaded (or has another size)")
        return {"success": True}

    def commit(self, repo_type: str, repo_id: str, revision: str, lines: list[dict], params: dict, base: str):
        header, operations = None, []
        for line in lines:
            key, value = line.get("key"), line.get("value")
            if key == "header":
                header = value
            elif key in ("file", "lfsFile", "deletedFile", "deletedFolder"):
                if not isinstance(value, dict) or not isinstance(value.get("path"), str) or not value["path"]:
                    raise HubError(400, f"Invalid commit operation {line!r}")
                if value["path"].startswith("/") or ".." in value["path"].split("/"):
                    raise HubError(400, f"Invalid path in repo {value['path']!r}")
                operations.append((key, value))
            else:
                raise HubError(400, f"Unknown commit line {key!r}")
        if not header or not header.get("summary"):
            raise HubError(400, "A commit needs a header line with a summary")
        create_pr = params.get("create_pr", ["0"])[-1] in ("1", "true")

        # Decode the inline files before taking the lock; everything is checked before anything changes.
        decoded: list[tuple[str, dict, bytes | None]] = []
        for key, value in operations:
            data = None
            if key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise HubError(400, f"Unsupported encoding {value.get('encoding')!r}")
                try:
                    data = base64.b64decode(value.get("content", ""), validate=True)
                except ValueError as error:
                    raise HubError(400, f"Invalid base64 content for {value['path']}") from error
            decoded.append((key, value, data))

        with self._lock:
            repo = self._get_repo(repo_type, repo_id, write=True)
            if revision not in repo.branches:
                raise HubError(404, f"Invalid rev id: {revision} is not a branch", "RevisionNotFound")
            head = repo.branches[revision]
            parent_commit = header.get("parentCommit")
            if parent_commit and not head.startswith(parent_commit):
                raise HubError(
                    412, f"A commit has happened since. Parent {parent_commit} is not the head {head}."
                )
            files = dict(repo.commits[head].files)
            for key, value, data in decoded:
                path = value["path"]
                if key == "file":
                    files[path] = self._store_regular(data)  # content-addressed: harmless if the commit fails
                elif key == "lfsFile":
                    oid = value.get("oid")
                    stored = self._lfs_objects.get(oid)
                    if stored is None:
                        raise HubError(422, f"LFS object {oid} of {path} was never uploaded")
                    if value.get("size") is not None and value["size"] != len(stored):
                        raise HubError(
                            422, f"LFS object {oid} of {path} has {len(stored)} bytes, not {value['size']}"
                        )
                    files[path] = self._lfs_entry(oid, len(stored))
                elif key == "deletedFile":
                    if path not in files:
                        raise HubError(
                            404, f"{path} does not exist", "EntryNotFound", {"X-Repo-Commit": head}
                        )
                    del files[path]
                else:
                    folder = path.rstrip("/") + "/"
                    doomed = [p for p in files if p.startswith(folder)]
                    if not doomed:
                        raise HubError(
                            404, f"Folder {path} does not exist", "EntryNotFound", {"X-Repo-Commit": head}
                        )
                    for p in doomed:
                        del files[p]
            if "README.md" in files:
                try:
                    _front_matter(self._content(files["README.md"]))
                except ValueError as error:
                    raise HubError(400, str(error)) from error
            commit = self._new_commit(repo, head, files, header["summary"], header.get("description") or "")
            pr_url = None
            if create_pr:
                repo.num_prs += 1
                repo.branches[f"refs/pr/{repo.num_prs}"] = commit.oid
                pr_url = f"{self._repo_url(base, repo)}/discussions/{repo.num_prs}"
            else:
                repo.branches[revision] = commit.oid
            return {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self._repo_url(base, repo)}/commit/{commit.oid}",
                "hookOutput": "",
                "pullRequestUrl": pr_url,
            }

    def create_branch(self, repo: _Repo, branch: str, body: dict) -> dict:
        if branch in repo.branches:
            raise HubError(409, f"Reference {branch} already exists")
        start = body.get("startingPoint") or "main"
        repo.branches[branch] = self._resolve(repo, start).oid
        return {}

    def delete_ref(self, refs: dict, name: str) -> dict:
        if name not in refs or name == "main":
            raise HubError(404, f"Invalid rev id: {name}", "RevisionNotFound")
        del refs[name]
        return {}

    def create_tag(self, repo: _Repo, revision: str, body: dict) -> dict:
        tag = body.get("tag")
        if not tag:
            raise HubError(400, "A tag name is required")
        if tag in repo.tags:
            raise HubError(409, f"Tag {tag} already exists")
        repo.tags[tag] = self._resolve(repo, revision).oid
        return {}

    def refs(self, repo: _Repo) -> dict:
        def ref(name: str, oid: str, kind: str) -> dict:
            return {
                "name": name,
                "ref": name if name.startswith("refs/") else f"refs/{kind}/{name}",
                "targetCommit": oid,
            }

        return {
            "branches": [
                ref(n, o, "heads") for n, o in repo.branches.items() if not n.startswith("refs/pr/")
            ],
            "tags": [ref(n, o, "tags") for n, o in repo.tags.items()],
            "converts": [],
            "pullRequests": [ref(n, o, "pr") for n, o in repo.branches.items() if n.startswith("refs/pr/")],
        }

    def commits(self, repo: _Repo, revision: str) -> list[dict]:
        return [
            {
                "id": c.oid,
                "title": c.title,
                "message": c.message,
                "authors": [{"user": self.user, "avatar": None}],
                "date": c.date,
            }
            for c in self._history(repo, self._resolve(repo, revision).oid)
        ]


class _Handler(BaseHTTPRequestHandler):
    """Routes one request to the `HubServer` (`hub`, set on the subclass made by `HubServer.start`)."""

    hub: HubServer
    protocol_version = "HTTP/1.1"
    server_version = "VLMixerTestHub/1.0"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - silence the per-request log
        pass

    # ------------------------------------------------------------------------------------------ plumbing

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json_body(self, raw: bytes) -> Any:
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError as error:
            raise HubError(400, f"Invalid JSON body: {error}") from error

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict | None = None,
        content_type: str = "application/json",
    ):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _send_json(self, payload: Any, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[7:] if auth.lower().startswith("bearer ") and auth[7:].strip() else None

    def _require_token(self) -> None:
        if self._token() is None:
            raise HubError(401, "Invalid credentials in Authorization header")

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        self.hub.requests.append((self.command, split.path))
        params = parse_qs(split.query)
        raw = self._body() if self.command in ("POST", "PUT", "DELETE") else b""
        segments = [unquote(s) for s in split.path.split("/")[1:]]
        base = self.hub._base_url(self)
        try:
            self._route(segments, params, raw, base)
        except HubError as error:
            headers = dict(error.headers)
            if error.error_code:
                headers["X-Error-Code"] = error.error_code
            headers["X-Error-Message"] = error.message
            self._send_json({"error": error.message}, error.status, headers)
        except Exception as error:  # a bug of the test server: answer 500 with the reason
            self._send_json(
                {"error": f"{type(error).__name__}: {error}"}, 500, {"X-Error-Message": str(error)}
            )

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    # --------------------------------------------------------------------------------------------- routes

    def _route(self, seg: list[str], params: dict, raw: bytes, base: str) -> None:
        hub, method = self.hub, self.command
        if seg[:1] == ["api"]:
            return self._route_api(seg[1:], params, raw, base)
        if seg[:1] == ["__lfs__"] and len(seg) == 2:
            if seg[1] == "verify" and method == "POST":
                return self._send_json(hub.lfs_verify(self._json_body(raw)))
            if method == "PUT":
                hub.lfs_put(seg[1], raw)
                return self._send(200, b"", {"ETag": f'"{seg[1]}"'})
            if method in ("GET", "HEAD"):
                data = hub._lfs_objects.get(seg[1])
                if data is None:
                    raise HubError(404, "Object does not exist")
                return self._send(200, data, content_type="application/octet-stream")
        repo_type = "model"
        if seg[:1] in (["datasets"], ["spaces"]):
            repo_type, seg = seg[0][:-1], seg[1:]
        # LFS batch API: /{repo}.git/info/lfs/objects/batch
        if len(seg) == 6 and seg[1].endswith(".git") and seg[2:] == ["info", "lfs", "objects", "batch"]:
            if method != "POST":
                raise HubError(405, "Method not allowed")
            self._require_token()
            with hub._lock:
                repo = hub._get_repo(repo_type, f"{seg[0]}/{seg[1][:-4]}", write=True)
                payload = hub.lfs_batch(repo, self._json_body(raw), base)
            return self._send(200, json.dumps(payload).encode(), content_type=_LFS_CONTENT_TYPE)
        # /{repo}/resolve/{rev}/{path}
        if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve_file(repo_type, f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:]))
        raise HubError(404, f"Unknown route {method} /{'/'.join(seg)}")

    def _route_api(self, seg: list[str], params: dict, raw: bytes, base: str) -> None:
        hub, method = self.hub, self.command
        if seg == ["whoami-v2"]:
            self._require_token()
            return self._send_json(
                {
                    "type": "user",
                    "id": "0" * 24,
                    "name": hub.user,
                    "fullname": hub.user,
                    "email": None,
                    "orgs": [],
                    "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}},
                }
            )
        if seg == ["validate-yaml"] and method == "POST":
            body = self._json_body(raw)
            try:
                _front_matter(body.get("content", "").encode())
            except ValueError as error:
                return self._send_json({"errors": [{"message": str(error)}], "warnings": []}, 400)
            return self._send_json({"errors": [], "warnings": []})
        if seg == ["repos", "create"] and method == "POST":
            self._require_token()
            try:
                status, payload = hub.create_repo(self._json_body(raw), base)
            except HubError as error:
                if error.status == 409:
                    url = error.headers.pop("X-Repo-Url")
                    return self._send_json({"error": error.message, "url": url}, 409)
                raise
            return self._send_json(payload, status)
        if seg == ["repos", "delete"] and method == "DELETE":
            self._require_token()
            return self._send_json(hub.delete_repo(self._json_body(raw))[1])
        if len(seg) < 3 or seg[0] not in ("models", "datasets", "spaces"):
            raise HubError(404, f"Unknown route {method} /api/{'/'.join(seg)}")
        repo_type, repo_id, rest = seg[0][:-1], f"{seg[1]}/{seg[2]}", seg[3:]
        token = self._token()
        is_write = method in ("PUT", "DELETE") or (method == "POST" and rest[:1] != ["paths-info"])
        if is_write:
            self._require_token()
        if rest and rest[0] == "commit" and len(rest) == 2 and method == "POST":
            try:
                lines = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
            except ValueError as error:
                raise HubError(400, f"Invalid NDJSON commit payload: {error}") from error
            return self._send_json(hub.commit(repo_type, repo_id, rest[1], lines, params, base))
        with hub._lock:
            repo = hub._get_repo(repo_type, repo_id, token, write=is_write)
            if not rest:
                if method != "GET":
                    raise HubError(405, f"Method {method} not allowed on /api/{'/'.join(seg)}")
                return self._send_json(hub.repo_info(repo, "main", params))
            if rest[0] == "revision" and len(rest) == 2 and method == "GET":
                return self._send_json(hub.repo_info(repo, rest[1], params))
            if rest[0] == "tree" and len(rest) >= 2 and method == "GET":
                return self._send_json(hub.tree(repo, rest[1], "/".join(rest[2:]), params))
            if rest[0] == "paths-info" and len(rest) == 2 and method == "POST":
                if raw.lstrip().startswith(b"{"):
                    paths = self._json_body(raw).get("paths", [])
                else:  # the client posts a form: paths=a&paths=b&expand=False
                    paths = parse_qs(raw.decode()).get("paths", [])
                return self._send_json(hub.paths_info(repo, rest[1], paths))
            if rest[0] == "preupload" and len(rest) == 2 and method == "POST":
                return self._send_json(hub.preupload(repo, rest[1], self._json_body(raw)))
            if rest[0] == "branch" and len(rest) == 2:
                if method == "POST":
                    return self._send_json(hub.create_branch(repo, rest[1], self._json_body(raw)))
                if method == "DELETE":
                    return self._send_json(hub.delete_ref(repo.branches, rest[1]))
            if rest[0] == "tag" and len(rest) == 2:
                if method == "POST":
                    return self._send_json(hub.create_tag(repo, rest[1], self._json_body(raw)))
                if method == "DELETE":
                    return self._send_json(hub.delete_ref(repo.tags, rest[1]))
            if rest == ["refs"] and method == "GET":
                return self._send_json(hub.refs(repo))
            if rest[0] == "commits" and len(rest) == 2 and method == "GET":
                return self._send_json(hub.commits(repo, rest[1]))
            if rest == ["settings"] and method == "PUT":
                body = self._json_body(raw)
                if "private" in body or "visibility" in body:
                    repo.private = bool(body.get("private")) or body.get("visibility") == "private"
                return self._send_json({})
        raise HubError(404, f"Unknown route {method} /api/{'/'.join(seg)}")

    def _resolve_file(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        hub = self.hub
        with hub._lock:
            repo = hub._get_repo(repo_type, repo_id, self._token())
            commit = hub._resolve(repo, revision)
            entry = commit.files.get(path)
            if entry is None:
                raise HubError(
                    404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.oid}
                )
            data = hub._content(entry)
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{entry.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}",
        }
        if entry.lfs_sha256:
            headers.update({"X-Linked-Etag": f'"{entry.lfs_sha256}"', "X-Linked-Size": str(entry.size)})
        status = 200
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "").strip())
        if match:
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(data) - 1
            if start >= len(data) and len(data) > 0:
                raise HubError(
                    416, "Range not satisfiable", headers={"Content-Range": f"bytes */{len(data)}"}
                )
            end = min(end, len(data) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start : end + 1], 206
        self._send(status, data, headers, content_type="application/octet-stream")
