"""An engine's identity: its name and declared version, plus digests of what can change its output.

A hand-bumped version string lets an edited table or engine be served from a stale cache. So each
engine also declares what it reads, and the identity carries a digest of each:

- `table:<file>`: the parts of a YAML table the engine uses, as it parsed them, canonicalised, so
  comments, key order and whitespace change nothing, and an edit of a part it never reads changes nothing;
- `model:<label>`: a model file or folder, by content (never by path);
- `source`: the engine's own module and every `models.*` module it imports, directly or not, as
  syntax trees without docstrings, so comments and formatting change nothing (in the spirit of Prefect's
  TASK_SOURCE cache policy, which hashes a task's source);
- `packages`: the installed versions of the libraries that compute the output (onnxruntime, mediapipe).

File digests are memoised per size and modification time, so a process pays for each file once; what
parsing a source file finds is also kept on disk by the file's content hash (`SourceFactsCache`). A
process keeps the tables and code it loaded: restart a long-running server to pick up edits.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Protocol

import yaml

from kernel.canonical import canonical_digest
from kernel.errors import EngineError

# imports followed into the source digest: the engines' own code, not the kernel or third parties
FIRST_PARTY = ("models",)


@dataclass(frozen=True)
class EngineIdentity:
    name: str
    version: str
    digests: Mapping[str, str] = field(default_factory=dict)  # what it covers -> sha256 hex

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "digests": dict(self.digests)}


class Identified(Protocol):
    """What every engine offers the stage core: a name, a version and an identity."""

    name: str

    @property
    def version(self) -> str: ...

    def identity(self) -> EngineIdentity: ...


@dataclass(frozen=True)
class TablePart:
    """The parts of one table an engine reads, as dotted paths (`*` stands for every key), taken from
    the document as the engine parsed it: a process that loaded a table before an edit keeps both
    its old rows and their old digest, so a key never promises output the engine did not make."""

    name: str  # the file's name, e.g. facs.yaml
    document: Any
    selectors: tuple[str, ...] = ("",)  # "" is the whole table

    @property
    def label(self) -> str:
        return f"table:{self.name}"


def table_file(path: Path, *selectors: str) -> TablePart:
    """A YAML table read now, for engines that do not keep its parsed document."""
    return TablePart(path.name, _parsed_yaml(*_stamp(path)), selectors or ("",))


def prompt_table(name: str, *selectors: str) -> TablePart:
    """A table shipped in prompts/ (emotions.yaml, facs.yaml, ...), read now."""
    return table_file(Path(str(resources.files("prompts") / name)), *selectors)


def describe(
    engine: Any,
    *,
    tables: Iterable[TablePart] = (),
    files: Mapping[str, Path | str] | None = None,
    packages: Sequence[str] = (),
    modules: Sequence[str] = (),
    version: str | None = None,
) -> EngineIdentity:
    """The identity of `engine`: its class's module (and `modules`) as source, plus what it reads."""
    digests = {"source": source_digest(type(engine).__module__, *modules)}
    for part in tables:
        digests[part.label] = table_digest(part)
    for label, path in (files or {}).items():
        digests[f"model:{label}"] = path_digest(Path(path))
    if packages:
        versions = {name: _package_version(name) for name in packages}
        reads = _READS.get()
        if reads is not None:
            reads.packages.update(versions)
        digests["packages"] = canonical_digest(versions)
    return EngineIdentity(engine.name, version if version is not None else engine.version, digests)


# -- what an identity read -------------------------------------------------------------------------


@dataclass
class Reads:
    """Every file, folder listing and package version one identity computation looked at, so that a
    later process can tell, without importing the engine, whether the same computation would give the
    same identity (models/identity_memo.py)."""

    files: dict[str, tuple[int, int]] = field(default_factory=dict)  # resolved path -> (size, mtime_ns)
    folders: dict[str, tuple[str, ...]] = field(default_factory=dict)  # folder -> its files, relative
    packages: dict[str, str] = field(default_factory=dict)  # distribution -> version


# a context variable, not a global: a batch's stage threads compute identities at the same time
_READS: ContextVar[Reads | None] = ContextVar("emoflow_identity_reads", default=None)


@contextmanager
def recording_reads() -> Iterator[Reads]:
    """Collect what the identity computations inside the block read."""
    reads = Reads()
    token = _READS.set(reads)
    try:
        yield reads
    finally:
        _READS.reset(token)


# -- tables ----------------------------------------------------------------------------------------


def table_digest(part: TablePart) -> str:
    return canonical_digest({selector: select(part.document, selector) for selector in part.selectors})


def select(data: Any, selector: str) -> Any:
    """The sub-tree `selector` names ("emotions.*.prosody"); absent keys give None."""
    if not selector:
        return data
    head, _, rest = selector.partition(".")
    if not isinstance(data, Mapping):
        return None
    if head == "*":
        return {str(key): select(value, rest) for key, value in data.items()}
    return select(data.get(head), rest) if head in data else None


@lru_cache(maxsize=64)
def _parsed_yaml(path: str, _size: int, _mtime_ns: int) -> Any:
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise EngineError(f"cannot read table {path}: {exc}") from exc


# -- model files -----------------------------------------------------------------------------------


def path_digest(path: Path) -> str:
    """Content digest of a file, or of a folder's files with their relative names."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        reads = _READS.get()
        if reads is not None:  # a file added to the folder changes the digest: the listing is a read too
            reads.folders[str(path.resolve())] = tuple(str(p.relative_to(path)) for p in files)
        return canonical_digest({str(p.relative_to(path)): _file_digest(*_stamp(p)) for p in files})
    return _file_digest(*_stamp(path))


@lru_cache(maxsize=256)
def _file_digest(path: str, _size: int, _mtime_ns: int) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _stamp(path: Path) -> tuple[str, int, int]:
    try:
        stat = path.stat()
    except OSError as exc:
        raise EngineError(f"cannot read {path}: {exc.strerror or exc}") from exc
    resolved = str(path.resolve())
    reads = _READS.get()
    if reads is not None:
        reads.files[resolved] = (stat.st_size, stat.st_mtime_ns)
    return resolved, stat.st_size, stat.st_mtime_ns


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


# -- source ----------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def source_digest(*roots: str) -> str:
    """Digest of the root modules and the first-party modules they import, transitively.

    Taken once per process, when the engine first asks: the code it runs is the code it imported
    then, and an edit on disk afterwards must not give old behaviour a new key.
    """
    return fresh_source_digest(*roots)


def fresh_source_digest(*roots: str) -> str:
    """The same digest, read from disk now."""
    closure = module_closure(roots)
    digest = canonical_digest({name: _source_facts(Path(path)).digest for name, path in closure.items()})
    _FACTS.save()
    return digest


def module_closure(roots: Iterable[str]) -> dict[str, str]:
    """Module name -> source file, for `roots`, their packages, and every first-party import."""
    found: dict[str, str] = {}
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in found:
            continue
        origin = _source_file(name)
        if origin is None:
            continue
        found[name] = origin
        pending += _parents(name)
        pending += _imports(_source_facts(Path(origin)), origin, name)
    return dict(sorted(found.items()))


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _source_file(name: str) -> str | None:
    """The .py file of module `name`, found on disk: looking up a submodule with importlib would
    import its packages (and torch with them)."""
    top, _, rest = name.partition(".")
    try:
        spec = importlib.util.find_spec(top)  # a top-level lookup imports nothing
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    base = Path(spec.origin).parent if spec.submodule_search_locations else None
    if not rest:
        return spec.origin
    if base is None:
        return None
    target = base.joinpath(*rest.split("."))
    for candidate in (target.with_suffix(".py"), target / "__init__.py"):
        if candidate.is_file():
            return str(candidate)
    return None


def _first_party(name: str) -> bool:
    return any(name == package or name.startswith(f"{package}.") for package in FIRST_PARTY)


def _imports(facts: SourceFacts, path: str, module: str) -> list[str]:
    """First-party modules imported anywhere in one file (function-level imports too)."""
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    names: list[str] = []
    for imported, level, members in facts.imports:
        if members is None:  # `import a.b`
            names.append(imported or "")
            continue
        base = _absolute(imported, level, package)
        names.append(base)
        # `from models.render import tables` imports a module; `from models.types import Speech` not
        names += [f"{base}.{member}" for member in members if _is_module(f"{base}.{member}")]
    return sorted({name for name in names if _first_party(name)})


def _absolute(module: str | None, level: int, package: str) -> str:
    if level == 0:
        return module or ""
    base = package.rsplit(".", level - 1)[0] if level > 1 else package
    return f"{base}.{module}" if module else base


def _is_module(name: str) -> bool:
    return _first_party(name) and _source_file(name) is not None


# (module, level, names) of each import statement; names None for `import module`
ImportStatement = tuple[str | None, int, tuple[str, ...] | None]


@dataclass(frozen=True)
class SourceFacts:
    """What the source digest needs from one file, found by parsing it."""

    digest: str  # sha256 of the syntax tree without docstrings
    imports: tuple[ImportStatement, ...]

    @classmethod
    def parse(cls, text: str, path: str) -> SourceFacts:
        tree = _parse(text, path)
        imports: list[ImportStatement] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imports += [(alias.name, 0, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                imports.append((node.module, node.level, tuple(alias.name for alias in node.names)))
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and _is_docstring(body[0]):
                node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]  # nodes with a body list
        dumped = ast.dump(tree, include_attributes=False)
        return cls(hashlib.sha256(dumped.encode("utf-8")).hexdigest(), tuple(imports))


class SourceFactsCache:
    """Parsed facts by the sha256 of a file's bytes, kept on disk under EMOFLOW_HOME.

    Parsing every engine's closure cost each CLI process about 1.4 s. Keyed by content, an entry can
    never describe other code than the file holds now: an edit is a new key. The syntax-tree dump
    differs between Python versions, hence one file per interpreter.
    """

    def __init__(self) -> None:
        self._entries: dict[str, SourceFacts] | None = None
        self._new = False
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        from kernel.settings import get_settings

        return get_settings().home_dir / "cache" / f"source-facts-{sys.implementation.cache_tag}.json"

    def get(self, content_sha256: str, text: Callable[[], str], path: str) -> SourceFacts:
        with self._lock:
            entries = self._loaded()
            facts = entries.get(content_sha256)
            if facts is None:
                facts = entries[content_sha256] = SourceFacts.parse(text(), path)
                self._new = True
            return facts

    def save(self) -> None:
        """Write new entries; a cache that cannot be written is only slower next time."""
        with self._lock:
            if not self._new or self._entries is None:
                return
            self._new = False
            document = {
                sha: {"digest": facts.digest, "imports": [list(statement) for statement in facts.imports]}
                for sha, facts in (self._read() | self._entries).items()
            }
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with tempfile.NamedTemporaryFile("w", dir=self.path.parent, delete=False) as handle:
                    json.dump(document, handle)
                os.replace(handle.name, self.path)  # readers see the old file or the new one, whole
            except OSError:
                pass

    def _loaded(self) -> dict[str, SourceFacts]:
        if self._entries is None:
            self._entries = self._read()
        return self._entries

    def _read(self) -> dict[str, SourceFacts]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            return {
                sha: SourceFacts(
                    entry["digest"],
                    tuple(
                        (module, level, None if names is None else tuple(names))
                        for module, level, names in entry["imports"]
                    ),
                )
                for sha, entry in document.items()
            }
        except (OSError, ValueError, TypeError, KeyError):  # absent or damaged: parse again
            return {}


_FACTS = SourceFactsCache()


@lru_cache(maxsize=1024)
def _file_source_facts(path: str, _size: int, _mtime_ns: int) -> SourceFacts:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise EngineError(f"cannot read engine source {path}: {exc}") from exc
    return _FACTS.get(hashlib.sha256(data).hexdigest(), lambda: data.decode("utf-8"), path)


def _source_facts(path: Path) -> SourceFacts:
    return _file_source_facts(*_stamp(path))


def _is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


# CPython 3.11's parser is not safe from two threads at once: a batch's stage threads digesting engine
# sources together failed with "SystemError: AST constructor recursion depth mismatch"
_PARSE_LOCK = threading.Lock()


def _parse(text: str, path: str) -> ast.Module:
    try:
        with _PARSE_LOCK:
            return ast.parse(text, filename=path)
    except SyntaxError as exc:
        raise EngineError(f"cannot read engine source {path}: {exc}") from exc
