"""Engine identities remembered with a witness, so a process can know one without importing the engine.

Computing an identity means importing the engine (torch, onnxruntime, mediapipe: seconds). A stage
that computes one records what the computation read (`identity.recording_reads`) and keeps the result
under EMOFLOW_HOME with a `Witness`: a digest of every file of the first-party packages that build
engines and their identities (`TREE_PACKAGES`, code and tables, by content), the size and modification
time of every other file it read (model files, the voice, MiniLM's folder and that folder's listing),
the versions of the packages it named, and the interpreter. A later process trusts the remembered
identity only while all of these are unchanged; otherwise it must compute the identity itself.

A process keeps the code and tables it loaded (see identity.py), so an identity is only remembered when
no file of the tree changed after the process started: a server started before an edit computes
identities from the old code, and they must not be remembered against the new files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from kernel.canonical import canonical_digest
from models.identity import EngineIdentity, Identified, recording_reads

# packages whose code or tables can change what an identity computation returns: the engines and
# their tables (models, prompts), the code that builds engines from job options (tasks) and the kernel
TREE_PACKAGES = ("models", "tasks", "kernel", "prompts")
MAX_KEYS = 4096  # remembered (stage, options) keys; the oldest go first
# the process start is read from /proc with clock-tick precision; files changed this close to it are
# treated as changed after it
START_MARGIN_NS = 500_000_000


@dataclass(frozen=True)
class Witness:
    python: str
    tree: str  # digest of TREE_PACKAGES' files by content
    files: Mapping[str, tuple[int, int]]  # other files read: path -> (size, mtime_ns)
    folders: Mapping[str, tuple[str, ...]]  # folders digested: path -> their files
    packages: Mapping[str, str]  # distribution -> version

    def to_dict(self) -> dict[str, Any]:
        return {
            "python": self.python,
            "tree": self.tree,
            "files": {path: list(stamp) for path, stamp in self.files.items()},
            "folders": {path: list(names) for path, names in self.folders.items()},
            "packages": dict(self.packages),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Witness:
        return cls(
            str(data["python"]),
            str(data["tree"]),
            {str(path): (int(stamp[0]), int(stamp[1])) for path, stamp in data["files"].items()},
            {str(path): tuple(str(n) for n in names) for path, names in data["folders"].items()},
            {str(name): str(version) for name, version in data["packages"].items()},
        )

    def broken(self) -> str | None:
        """Why the witnessed identity may no longer hold (None: everything it rests on is unchanged)."""
        if self.python != sys.version:
            return "another Python"
        if _settled_tree().digest != self.tree:
            return "engine code or tables changed"
        for path, stamp in self.files.items():
            try:
                stat = os.stat(path)
            except OSError:
                return f"{path} is gone"
            if (stat.st_size, stat.st_mtime_ns) != stamp:
                return f"{path} changed"
        for folder, names in self.folders.items():
            root = Path(folder)
            if tuple(str(p.relative_to(root)) for p in sorted(root.rglob("*")) if p.is_file()) != names:
                return f"{folder} changed"
        for name, version in self.packages.items():
            if _settled_version(name) != version:
                return f"{name} is now {_settled_version(name)}"
        return None


# -- one look at the files for many checks ---------------------------------------------------------


@dataclass
class _Look:
    tree: TreeState | None = None
    versions: dict[str, str] = field(default_factory=dict)
    verdicts: dict[str, str | None] = field(default_factory=dict)  # entry digest -> Witness.broken()
    memos: dict[Path, dict[str, Any]] = field(default_factory=dict)  # memo file -> its document


# a context variable, so a look belongs to the thread (and block) that took it
_LOOK: ContextVar[_Look | None] = ContextVar("emoflow_identity_look", default=None)


@contextmanager
def one_look() -> Iterator[None]:
    """Inside the block, the tree, package versions and each witness are looked at once.

    A process that runs the flow loads its engines once and keeps them, whatever changes on disk
    later; a process resolving many jobs from the store may likewise decide for all of them on one
    look (a batch of 20 jobs looked at the tree 120 times, 60 ms per job).
    """
    if _LOOK.get() is not None:  # inside another look: that one holds
        yield
        return
    token = _LOOK.set(_Look())
    try:
        yield
    finally:
        _LOOK.reset(token)


def _settled_tree() -> TreeState:
    look = _LOOK.get()
    if look is None:
        return tree_state()
    if look.tree is None:
        look.tree = tree_state()
    return look.tree


def _settled_version(name: str) -> str:
    look = _LOOK.get()
    if look is None:
        return _version(name)
    if name not in look.versions:
        look.versions[name] = _version(name)
    return look.versions[name]


def witnessed_identity(engine: Identified) -> tuple[EngineIdentity, Witness | None]:
    """The engine's identity, and a witness to remember it by (None when this process may be running
    other code or tables than the files now hold)."""
    with recording_reads() as reads:
        identity = engine.identity()
    started = process_started_ns()
    tree = tree_state()
    if started is None or tree.newest_mtime_ns >= started - START_MARGIN_NS:
        return identity, None
    tree_files = tuple(str(root) + os.sep for root in tree.roots)
    witness = Witness(
        python=sys.version,
        tree=tree.digest,
        # files of the tree are in its digest already
        files={path: stamp for path, stamp in reads.files.items() if not path.startswith(tree_files)},
        folders=dict(reads.folders),
        packages=dict(reads.packages),
    )
    return identity, witness


# -- the tree --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TreeState:
    digest: str
    newest_mtime_ns: int
    roots: tuple[Path, ...]


def tree_state() -> TreeState:
    """TREE_PACKAGES' files by content, found on disk (nothing is imported), hashed once per stamp."""
    entries: dict[str, str] = {}
    newest = 0
    roots: list[Path] = []
    for package in TREE_PACKAGES:
        root = _package_root(package)
        if root is None:
            entries[package] = "absent"
            continue
        roots.append(root)
        for folder, subfolders, names in os.walk(root):
            subfolders[:] = sorted(d for d in subfolders if d != "__pycache__")
            for name in sorted(names):
                if name.endswith((".pyc", ".pyo")):
                    continue
                path = os.path.join(folder, name)
                stat = os.stat(path)
                newest = max(newest, stat.st_mtime_ns)
                relative = os.path.relpath(path, root.parent)
                entries[relative] = _content_digest(path, stat.st_size, stat.st_mtime_ns)
    return TreeState(canonical_digest(entries), newest, tuple(roots))


def _package_root(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)  # a top-level lookup imports nothing
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).resolve()


@lru_cache(maxsize=4096)
def _content_digest(path: str, _size: int, _mtime_ns: int) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@lru_cache(maxsize=1)
def process_started_ns() -> int | None:
    """When this process started (wall clock, ns), from /proc; None where there is no /proc."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started_ticks = int(fields[19])  # field 22, starttime: clock ticks after boot
        uptime_s = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    age_s = uptime_s - started_ticks / os.sysconf("SC_CLK_TCK")
    return time.time_ns() - int(age_s * 1e9)


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


# -- the memo --------------------------------------------------------------------------------------


class IdentityMemo:
    """Remembered identities by key (the caller's: a stage and its job options), on disk as JSON.

    Identities and witnesses are stored once each and keys point at them: a manifest's jobs differ in
    their options (output folders) but share a handful of identities.
    """

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._lock = threading.Lock()
        # (memo file, key) -> entry digest this process wrote or found there
        self._known: dict[tuple[Path, str], str] = {}

    @property
    def path(self) -> Path:
        if self._path is not None:
            return self._path
        from kernel.settings import get_settings

        return get_settings().home_dir / "cache" / f"identities-{sys.implementation.cache_tag}.json"

    def recall(self, key: str) -> tuple[EngineIdentity | None, str]:
        """The identity remembered for `key` if its witness still holds, else None and why not."""
        look = _LOOK.get()
        if look is None:
            document = self._read()
        else:
            document = look.memos.get(self.path) or look.memos.setdefault(self.path, self._read())
        digest = document["keys"].get(key)
        entry = document["entries"].get(digest) if digest else None
        if entry is None:
            return None, "no identity remembered"
        try:
            identity = EngineIdentity(**entry["identity"])
            witness = Witness.from_dict(entry["witness"])
        except (KeyError, TypeError, ValueError, IndexError):
            return None, "a damaged memo entry"
        if look is None:
            reason = witness.broken()
        elif digest in look.verdicts:
            reason = look.verdicts[digest]
        else:
            reason = look.verdicts[digest] = witness.broken()
        if reason is not None:
            return None, reason
        return identity, ""

    def remember(self, key: str, identity: EngineIdentity, witness: Witness) -> None:
        """Keep `identity` for `key`; a memo that cannot be written only costs speed later."""
        entry = {"identity": identity.to_dict(), "witness": witness.to_dict()}
        digest = canonical_digest(entry)
        known = (self.path, key)
        with self._lock:
            if self._known.get(known) == digest:
                return  # the common case, every run of an unchanged job: nothing to write
            document = self._read()
            if document["keys"].get(key) != digest:
                keys: dict[str, str] = document["keys"]
                keys.pop(key, None)
                keys[key] = digest  # newest last
                while len(keys) > MAX_KEYS:
                    keys.pop(next(iter(keys)))
                document["entries"][digest] = entry
                used = set(keys.values())
                document["entries"] = {d: e for d, e in document["entries"].items() if d in used}
                self._write(document)
            self._known[known] = digest

    def _read(self) -> dict[str, Any]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(document.get("keys"), dict) and isinstance(document.get("entries"), dict):
                return dict(document)
        except (OSError, ValueError, AttributeError):
            pass
        return {"keys": {}, "entries": {}}

    def _write(self, document: Mapping[str, Any]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                "w", dir=self.path.parent, delete=False, suffix=".tmp"
            ) as handle:
                json.dump(document, handle)
            os.replace(handle.name, self.path)  # readers see the old memo or the new one, whole
        except OSError:
            pass


MEMO = IdentityMemo()
