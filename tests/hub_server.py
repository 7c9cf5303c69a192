"""A Hub-compatible HTTP server for tests (stdlib only): the endpoints huggingface_hub 2.4 uses to
create repos, commit files (regular and LFS), read repo info and trees, and download files.

Repos live in memory as git-like commits: {sha: {path: bytes}}. Faults can be injected:
`fail_next = n` answers the next n requests with 503; `cut_commits = n` closes the connection in
the middle of the next n commit requests; `tokens` maps accepted tokens to user names; `private`/`gated`
repo ids need a token (401) / are refused (403).

It also serves the Jobs API (`run_job`, `inspect_job`, `list_jobs`, `fetch_job_logs`, `cancel_job`,
`list_jobs_hardware`): a job's command runs as a local subprocess (the image is ignored) with the server's
`job_env` plus the job's environment and secrets, and its output is streamed as the Hub's SSE log events.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse


@dataclass
class Repo:
    kind: str  # "model" | "dataset"
    private: bool = False
    gated: bool = False
    commits: list[tuple[str, dict[str, bytes], str]] = field(default_factory=list)  # (sha, files, message)

    def head(self) -> tuple[str, dict[str, bytes]] | None:
        return (self.commits[-1][0], self.commits[-1][1]) if self.commits else None

    def at(self, rev: str) -> tuple[str, dict[str, bytes]] | None:
        if rev in ("main", None):
            return self.head()
        for sha, files, _ in self.commits:
            if sha == rev:
                return sha, files
        return None


@dataclass
class RemoteJob:
    """A Jobs API job: its spec as the client sent it (secrets kept apart) and the process running it."""
    id: str
    namespace: str
    spec: dict
    secrets: dict[str, str]
    stage: str = "RUNNING"
    message: str | None = None
    logs: list[tuple[str, str]] = field(default_factory=list)  # (timestamp, line)
    created: str = ""
    started: str | None = None
    finished: str | None = None
    proc: subprocess.Popen | None = None

    def info(self, host: str) -> dict:
        spec = self.spec
        return {"id": self.id, "createdAt": self.created, "startedAt": self.started, "finishedAt": self.finished,
                "dockerImage": spec.get("dockerImage"), "command": spec.get("command"), "arguments": [],
                "environment": spec.get("environment", {}), "secrets": {k: None for k in self.secrets},
                "flavor": spec.get("flavor"), "labels": spec.get("labels"),
                "status": {"stage": self.stage, "message": self.message},
                "durations": {"runningSecs": _seconds(self.started, self.finished)},
                "owner": {"id": "u-" + self.namespace, "name": self.namespace, "type": "user"}}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _seconds(start: str | None, end: str | None) -> int | None:
    if start is None:
        return None
    t0 = datetime.fromisoformat(start.replace("Z", "+00:00"))
    t1 = datetime.fromisoformat(end.replace("Z", "+00:00")) if end else datetime.now(timezone.utc)
    return int((t1 - t0).total_seconds())


# Two GPU flavors at the prices of the Hub's Jobs pricing page (T4 small $0.40/h, T4 medium $0.60/h), and one
# multi-GPU flavor priced for the tests only.
HARDWARE = [
    {"name": "cpu-basic", "prettyName": "CPU Basic", "cpu": "2 vCPU", "ram": "16 GB", "accelerator": None,
     "unitCostMicroUSD": 167, "unitCostUSD": 0.000167, "unitLabel": "minute"},
    {"name": "t4-small", "prettyName": "Nvidia T4 - small", "cpu": "4 vCPU", "ram": "15 GB",
     "accelerator": {"type": "gpu", "model": "T4", "quantity": "1", "vram": "16 GB", "manufacturer": "Nvidia"},
     "unitCostMicroUSD": 6667, "unitCostUSD": 0.006667, "unitLabel": "minute"},
    {"name": "t4-medium", "prettyName": "Nvidia T4 - medium", "cpu": "8 vCPU", "ram": "30 GB",
     "accelerator": {"type": "gpu", "model": "T4", "quantity": "1", "vram": "16 GB", "manufacturer": "Nvidia"},
     "unitCostMicroUSD": 10000, "unitCostUSD": 0.01, "unitLabel": "minute"},
    {"name": "test-gpux2", "prettyName": "Test GPU x2", "cpu": "8 vCPU", "ram": "32 GB",
     "accelerator": {"type": "gpu", "model": "T4", "quantity": "2", "vram": "32 GB", "manufacturer": "Nvidia"},
     "unitCostMicroUSD": 20000, "unitCostUSD": 0.02, "unitLabel": "minute"},
]


class State:
    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs: dict[str, bytes] = {}  # sha256 -> bytes
        self.tokens: dict[str, str] = {}  # token -> user
        self.fail_next = 0
        self.cut_commits = 0  # how many of the next commit requests lose their connection mid-upload
        self.requests: list[str] = []
        self.users: list[str | None] = []  # the user behind each request's token (None: anonymous)
        self.lfs_uploads = 0
        self.lock = threading.Lock()
        self.jobs: dict[str, RemoteJob] = {}
        self.job_env: dict[str, str] = {}  # the "image's" environment under every job's own
        self.job_cwd: str | None = None
        self.hardware = HARDWARE
        self.launches = 0
        self.launched_labels: dict[str, dict] = {}  # each job's labels as run_job sent them

    def run_remote(self, job: RemoteJob) -> None:
        env = {**self.job_env, **job.spec.get("environment", {}), **job.secrets}
        job.started = _now()
        job.logs.append((_now(), "===== Job started ====="))
        job.proc = subprocess.Popen(job.spec["command"], env=env, cwd=self.job_cwd, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, start_new_session=True)
        timeout = job.spec.get("timeoutSeconds")
        threading.Thread(target=self._read, args=(job, timeout), daemon=True).start()

    def _read(self, job: RemoteJob, timeout: int | None) -> None:
        if timeout:
            timer = threading.Timer(timeout, lambda: self.stop(job, "ERROR", "Job timeout"))
            timer.daemon = True
            timer.start()
        for line in job.proc.stdout:
            job.logs.append((_now(), line.rstrip("\n")))
        code = job.proc.wait()
        with self.lock:
            if job.stage == "RUNNING":
                job.stage, job.message = ("COMPLETED", None) if code == 0 else ("ERROR", f"exit code {code}")
            job.finished = job.finished or _now()

    def stop(self, job: RemoteJob, stage: str, message: str | None = None) -> None:
        with self.lock:
            if job.stage != "RUNNING":
                return
            job.stage, job.message, job.finished = stage, message, _now()
        try:
            os.killpg(job.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop_all(self) -> None:
        for job in list(self.jobs.values()):
            if job.proc is not None:
                self.stop(job, "CANCELED", "server shut down")

    def add_repo(self, kind: str, repo_id: str, files: dict[str, bytes], private: bool = False, gated: bool = False) -> str:
        repo = self.repos.setdefault((kind, repo_id), Repo(kind, private, gated))
        return commit(repo, files, "initial", parent_files={})


def commit(repo: Repo, files: dict[str, bytes], message: str, parent_files: dict[str, bytes] | None = None) -> str:
    base = dict(repo.head()[1]) if repo.head() and parent_files is None else dict(parent_files or {})
    base.update(files)
    h = hashlib.sha1((repo.head()[0] if repo.head() else "").encode() + message.encode())
    for path in sorted(base):
        h.update(path.encode() + b"\0" + hashlib.sha1(base[path]).digest())
    sha = h.hexdigest()
    repo.commits.append((sha, base, message))
    return sha


SPACE_SDKS = {"gradio", "docker", "static", "streamlit"}
SPACE_COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
OAUTH_SCOPES = {"openid", "profile", "email", "read-repos", "write-repos", "manage-repos", "inference-api",
                "read-billing", "jobs", "gated-repos", "webhooks"}


def validate_card(content: str, repo_type: str) -> list[str]:
    """The Hub's metadata checks for a Space card, as documented for the Space configuration reference."""
    import yaml

    if not content.startswith("---"):
        return []  # the Hub warns about empty metadata; it does not refuse the card
    try:
        meta = yaml.safe_load(content.split("---", 2)[1]) or {}
    except yaml.YAMLError as exc:
        return [f"metadata is not valid YAML: {exc}"]
    if repo_type != "space":
        return []
    errors = []
    if meta.get("sdk") not in SPACE_SDKS:
        errors.append(f'"sdk" must be one of {sorted(SPACE_SDKS)}')
    for key in ("colorFrom", "colorTo"):
        if key in meta and meta[key] not in SPACE_COLORS:
            errors.append(f'"{key}" must be one of {sorted(SPACE_COLORS)}')
    if meta.get("sdk") == "gradio" and not isinstance(meta.get("sdk_version"), str):
        errors.append('"sdk_version" is required for the gradio sdk')
    if "app_file" in meta and not str(meta["app_file"]).endswith(".py"):
        errors.append('"app_file" must be a .py file for the gradio sdk')
    if "hf_oauth" in meta and not isinstance(meta["hf_oauth"], bool):
        errors.append('"hf_oauth" must be a boolean')
    scopes = meta.get("hf_oauth_scopes", [])
    if not isinstance(scopes, list) or set(scopes) - OAUTH_SCOPES:
        errors.append(f'"hf_oauth_scopes" must be a list of {sorted(OAUTH_SCOPES)}')
    minutes = meta.get("hf_oauth_expiration_minutes", 480)
    if not isinstance(minutes, int) or not 30 <= minutes <= 43200:
        errors.append('"hf_oauth_expiration_minutes" must be an integer from 30 to 43200')
    if len(str(meta.get("short_description", ""))) > 60:
        errors.append('"short_description" must be at most 60 characters')
    return errors


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def make_handler(state: State):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        # ---- plumbing ----------------------------------------------------------------------------
        def _send(self, code: int, body: bytes | dict | list = b"", headers: dict | None = None) -> None:
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
                headers = {"Content-Type": "application/json", **(headers or {})}
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, code: int, error_code: str, message: str) -> None:
            self._send(code, {"error": message}, {"X-Error-Code": error_code, "X-Error-Message": message})

        def _body(self) -> bytes:
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def _user(self) -> str | None:
            auth = self.headers.get("Authorization", "")
            return state.tokens.get(auth.removeprefix("Bearer ").strip()) if auth.startswith("Bearer ") else None

        def _repo(self, kind: str, repo_id: str, write: bool = False) -> Repo | None:
            repo = state.repos.get((kind, repo_id))
            user = self._user()
            if repo is None or (repo.private and user is None):
                self._error(401 if user is None and repo is not None else 404, "RepoNotFound",
                            f"Repository Not Found for url: {self.path}")
                return None
            if repo.gated and user is None:
                self._error(403, "GatedRepo", f"Access to model {repo_id} is restricted")
                return None
            if write and (user is None or repo_id.split("/")[0] not in (user, "orgs-of-" + user, "me", "factory")):
                self._error(403, "Forbidden", f"You don't have the rights to write to {repo_id}")
                return None
            return repo

        def _fault(self) -> bool:
            with state.lock:
                state.requests.append(f"{self.command} {self.path}")
                state.users.append(self._user())
                if state.fail_next > 0:
                    state.fail_next -= 1
                    self._body()  # consume it, or keep-alive would read it as the next request
                    self._send(503, {"error": "Service Unavailable"})
                    return True
            return False

        # ---- routes ------------------------------------------------------------------------------
        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            if self._fault():
                return
            path = unquote(urlparse(self.path).path)
            m = re.match(r"^/api/(models|datasets)/([^/]+/[^/]+?)(?:/revision/([^/]+))?/?$", path)
            if m:
                return self._info(m.group(1)[:-1], m.group(2), m.group(3))
            m = re.match(r"^/api/(models|datasets)/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?$", path)
            if m:
                return self._tree(m.group(1)[:-1], m.group(2), m.group(3))
            m = re.match(r"^/(?:(datasets)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
            if m:
                return self._resolve("dataset" if m.group(1) else "model", m.group(2), m.group(3), m.group(4))
            if path.startswith("/api/jobs"):
                return self._jobs_get(path, parse_qs(urlparse(self.path).query))
            if path.startswith("/api/whoami"):
                user = self._user()
                return self._send(200, {"name": user, "type": "user"}) if user else self._error(401, "Unauthorized", "bad token")
            self._error(404, "EntryNotFound", f"no route {path}")

        def do_POST(self) -> None:
            if self._fault():
                return
            path = unquote(urlparse(self.path).path)
            if path == "/api/validate-yaml":
                body = json.loads(self._body() or b"{}")
                errors = validate_card(body.get("content", ""), body.get("repoType", "model"))
                return self._send(400 if errors else 200, {"errors": [{"message": e} for e in errors], "warnings": []})
            if path.startswith("/api/jobs/"):
                return self._jobs_post(path, json.loads(self._body() or b"{}"))
            if path == "/api/repos/create":
                return self._create(json.loads(self._body() or b"{}"))
            m = re.match(r"^/api/(models|datasets)/([^/]+/[^/]+)/preupload/([^/]+)$", path)
            if m:
                return self._preupload(m.group(1)[:-1], m.group(2), json.loads(self._body()))
            m = re.match(r"^/api/(models|datasets)/([^/]+/[^/]+)/commit/([^/]+)$", path)
            if m:
                return self._commit(m.group(1)[:-1], m.group(2))
            m = re.match(r"^/(?:datasets/)?([^/]+/[^/]+)\.git/info/lfs/objects/batch$", path)
            if m:
                return self._lfs_batch(json.loads(self._body()))
            m = re.match(r"^/lfs-verify/([0-9a-f]{64})$", path)
            if m:
                self._body()
                return self._send(200, {"ok": True}) if m.group(1) in state.lfs else self._send(404, {"error": "missing"})
            self._error(404, "EntryNotFound", f"no route {path}")

        def do_PUT(self) -> None:
            m = re.match(r"^/api/jobs/([^/]+)/([^/]+)/labels$", urlparse(self.path).path)
            if m:
                body, user = json.loads(self._body() or b"{}"), self._user()
                job = state.jobs.get(m.group(2))
                if user is None or job is None or job.namespace != user or m.group(1) != user:
                    return self._error(404, "NotFound", f"job {m.group(2)} not found")
                job.spec["labels"] = body["labels"]
                return self._send(200, job.info(self.headers["Host"]))
            m = re.match(r"^/lfs-upload/([0-9a-f]{64})$", urlparse(self.path).path)
            data = self._body()
            if not m or hashlib.sha256(data).hexdigest() != m.group(1):
                return self._send(400, {"error": "bad lfs upload"})
            state.lfs[m.group(1)] = data
            state.lfs_uploads += 1
            self._send(200)

        # ---- handlers ----------------------------------------------------------------------------
        def _info(self, kind: str, repo_id: str, rev: str | None) -> None:
            repo = self._repo(kind, repo_id)
            if repo is None:
                return
            found = repo.at(rev or "main")
            if found is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            sha, files = found
            self._send(200, {"id": repo_id, "sha": sha, "private": repo.private,
                             "siblings": [{"rfilename": p} for p in sorted(files)]})

        def _tree(self, kind: str, repo_id: str, rev: str) -> None:
            repo = self._repo(kind, repo_id)
            if repo is None:
                return
            found = repo.at(rev)
            if found is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            out = []
            for p, data in sorted(found[1].items()):
                entry = {"type": "file", "path": p, "size": len(data), "oid": git_blob_sha(data)}
                if p.endswith(".safetensors"):
                    entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                out.append(entry)
            self._send(200, out)

        def _resolve(self, kind: str, repo_id: str, rev: str, file: str) -> None:
            repo = self._repo(kind, repo_id)
            if repo is None:
                return
            found = repo.at(unquote(rev))
            if found is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            sha, files = found
            if file not in files:
                return self._error(404, "EntryNotFound", f"{file} not in {repo_id}")
            data = files[file]
            etag = hashlib.sha256(data).hexdigest() if file.endswith(".safetensors") else git_blob_sha(data)
            headers = {"X-Repo-Commit": sha, "ETag": f'"{etag}"', "Content-Type": "application/octet-stream"}
            if file.endswith(".safetensors"):
                headers["X-Linked-Etag"] = f'"{etag}"'
                headers["X-Linked-Size"] = str(len(data))
            self._send(200, data, headers)

        def _create(self, body: dict) -> None:
            user = self._user()
            if user is None:
                return self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
            kind = body.get("type") or "model"
            repo_id = f"{body.get('organization') or user}/{body['name']}"
            if (kind, repo_id) in state.repos:
                return self._send(409, {"error": "You already created this model repo", "url": f"/{repo_id}"})
            private = bool(body.get("private")) or body.get("visibility") == "private"  # huggingface_hub>=1.x sends visibility
            repo = state.repos[(kind, repo_id)] = Repo(kind, private=private)
            commit(repo, {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}, "initial commit")
            self._send(200, {"url": f"http://{self.headers['Host']}/{repo_id}", "name": repo_id})

        def _preupload(self, kind: str, repo_id: str, body: dict) -> None:
            if self._repo(kind, repo_id, write=True) is None:
                return
            files = [{"path": f["path"], "uploadMode": "lfs" if f["path"].endswith(".safetensors") else "regular",
                      "shouldIgnore": False} for f in body.get("files", [])]
            self._send(200, {"files": files, "commitOid": None})

        def _commit(self, kind: str, repo_id: str) -> None:
            repo = self._repo(kind, repo_id, write=True)
            if repo is None:
                self._body()
                return
            if state.cut_commits > 0:  # the connection breaks mid-upload: nothing is committed
                state.cut_commits -= 1
                self.rfile.read(max(1, int(self.headers.get("Content-Length") or 2) // 2))
                self.close_connection = True
                self.connection.shutdown(2)
                return
            lines = [json.loads(x) for x in self._body().splitlines() if x.strip()]
            header = next(x["value"] for x in lines if x["key"] == "header")
            files: dict[str, bytes] = {}
            deleted: list[str] = []
            for x in lines:
                v = x["value"]
                if x["key"] == "file":
                    files[v["path"]] = base64.b64decode(v["content"])
                elif x["key"] == "lfsFile":
                    if v["oid"] not in state.lfs:
                        return self._send(422, {"error": f"LFS object {v['oid']} was never uploaded"})
                    files[v["path"]] = state.lfs[v["oid"]]
                elif x["key"] in ("deletedFile", "deletedFolder"):
                    deleted.append(v["path"])
            current = dict(repo.head()[1]) if repo.head() else {}
            for p in deleted:
                current = {k: d for k, d in current.items() if k != p and not k.startswith(p.rstrip("/") + "/")}
            sha = commit(repo, files, header.get("summary", ""), parent_files=current)
            self._send(200, {"commitOid": sha, "commitUrl": f"http://{self.headers['Host']}/{repo_id}/commit/{sha}",
                             "hookOutput": "", "success": True, "pullRequestUrl": None})

        # ---- Jobs ------------------------------------------------------------------------------------
        def _jobs_get(self, path: str, query: dict) -> None:
            user = self._user()
            if user is None:
                return self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
            if path == "/api/jobs/hardware":
                return self._send(200, state.hardware)
            m = re.match(r"^/api/jobs/([^/]+)(?:/([^/]+))?(?:/(logs))?$", path)
            if not m or m.group(1) != user:
                return self._error(404 if m else 400, "NotFound", f"no jobs route {path}")
            if m.group(2) is None:  # list_jobs, filtered by stage and label
                stages, labels = query.get("stage", []), [x.split("=", 1) for x in query.get("label", [])]
                found = [j.info(self.headers["Host"]) for j in state.jobs.values() if j.namespace == user
                         and (not stages or j.stage in stages)
                         and all((j.spec.get("labels") or {}).get(k) == v for k, v in labels)]
                return self._send(200, found)
            job = state.jobs.get(m.group(2))
            if job is None or job.namespace != user:
                return self._error(404, "NotFound", f"job {m.group(2)} not found")
            if m.group(3) is None:
                return self._send(200, job.info(self.headers["Host"]))
            self._stream_logs(job)

        def _stream_logs(self, job: RemoteJob) -> None:
            """Server-sent events, one per log line, until the job has ended and every line was sent."""
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            sent = 0
            try:
                while True:
                    ended = job.stage != "RUNNING" and job.proc is not None and job.proc.poll() is not None
                    while sent < len(job.logs):
                        ts, line = job.logs[sent]
                        self.wfile.write(b"data: " + json.dumps({"timestamp": ts, "data": line}).encode() + b"\n\n")
                        sent += 1
                    self.wfile.flush()
                    if ended or job.stage in ("CANCELED", "ERROR") and sent >= len(job.logs):
                        return
                    time.sleep(0.05)
            except (BrokenPipeError, ConnectionResetError):
                return

        def _jobs_post(self, path: str, body: dict) -> None:
            user = self._user()
            if user is None:
                return self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
            m = re.match(r"^/api/jobs/([^/]+)(?:/([^/]+)/(cancel))?$", path)
            if not m or m.group(1) != user:
                return self._error(403, "Forbidden", f"no jobs in namespace {m.group(1) if m else path}")
            if m.group(3) == "cancel":
                job = state.jobs.get(m.group(2))
                if job is None:
                    return self._error(404, "NotFound", f"job {m.group(2)} not found")
                state.stop(job, "CANCELED", "canceled by user")
                return self._send(200, {})
            if body.get("flavor") not in {h["name"] for h in state.hardware}:
                return self._error(400, "BadRequest", f"unknown flavor {body.get('flavor')}")
            secrets = body.pop("secrets", None) or {}
            with state.lock:
                state.launches += 1
                job = RemoteJob(id=hashlib.sha1(f"{time.time()}{state.launches}".encode()).hexdigest()[:24],
                                namespace=user, spec=body, secrets=secrets, created=_now())
                state.jobs[job.id] = job
                state.launched_labels[job.id] = dict(body.get("labels") or {})
            state.run_remote(job)
            self._send(200, job.info(self.headers["Host"]))

        def _lfs_batch(self, body: dict) -> None:
            host = self.headers["Host"]
            objects = []
            for o in body.get("objects", []):
                entry = {"oid": o["oid"], "size": o["size"], "authenticated": True}
                if o["oid"] not in state.lfs:
                    entry["actions"] = {"upload": {"href": f"http://{host}/lfs-upload/{o['oid']}"},
                                        "verify": {"href": f"http://{host}/lfs-verify/{o['oid']}"}}
                objects.append(entry)
            self._send(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                       {"Content-Type": "application/vnd.git-lfs+json"})

    return Handler


class HubServer:
    """Start with `with HubServer() as hub:`; hub.url is the endpoint, hub.state the repos and faults."""

    def __init__(self) -> None:
        self.state = State()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self.state))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "HubServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.state.stop_all()
        self.httpd.shutdown()
        self.httpd.server_close()
