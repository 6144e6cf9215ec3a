"""Plugin discovery, code identity and the look-ahead guard (the registry itself lives in ``sim.plugins``).

Trust model (docs/plugins.md):
* Plugins come from the user's machine only: installed distributions through the entry-point group
  ``artifact_lake.plugins``, and paths given with ``--plugins PATH`` or ``LAKE_PLUGINS`` (joined with
  ``os.pathsep``). Never from the lake: a spec names a registered plugin; a name that is not registered, or
  that looks like a module or a file (``os:system``, ``../evil.py``, ``builtins.eval``), is refused before
  anything is imported.
* A plugin's code closure is its module file, or every ``.py`` file of the package that defines it, plus the
  distribution's name and version when it comes from one. Its blake3 is recorded on the run; the files are
  published as a ``source`` artifact (read, diffed and written out, never imported).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from ._version import code_version
from .errors import LookAhead, PluginError, SpecError

if TYPE_CHECKING:
    import numpy as np

    from artifact_lake.sim.plugins import Plugin

GROUP = "artifact_lake.plugins"
ENV = "LAKE_PLUGINS"
GUARD_CUTS = 3
"""Cuts per combination (and symbol) of the look-ahead guard."""
GUARD_WINDOW = 4096
"""The guard checks the first bars of each series, at most this many: a bounded share of the run."""


_loaded_entry_points = False
_loaded_paths: dict[str, str] = {}
"""Resolved path -> closure hash it was imported with (an edited file is imported again)."""


def _sim_plugins() -> Any:
    from artifact_lake.sim import plugins

    return plugins


_configured: list[str] | None = None


def configure(paths: Sequence[str] | None) -> None:
    """Use ``paths`` (the CLI's ``--plugins``) instead of ``LAKE_PLUGINS`` wherever plugins are loaded."""
    global _configured
    _configured = None if paths is None else list(paths)


def env_paths() -> list[str]:
    if _configured is not None:
        return list(_configured)
    return [p for p in os.environ.get(ENV, "").split(os.pathsep) if p]


def load(paths: Sequence[str] | None = None) -> None:
    """Register installed plugins (entry points, once) and the plugins at ``paths`` (``LAKE_PLUGINS`` when None).

    A path is a ``.py`` file or a package folder (with ``__init__.py``); it is imported again when its code
    changed since it was last imported.
    """
    global _loaded_entry_points
    import artifact_lake.sim  # noqa: F401  the built-ins register themselves

    if not _loaded_entry_points:
        _loaded_entry_points = True
        for ep in metadata.entry_points(group=GROUP):
            try:
                ep.load()
            except Exception as exc:
                dist = ep.dist.name if ep.dist is not None else "?"
                raise PluginError(
                    f"plugin entry point {ep.name!r} of {dist} ({ep.value}) failed to load: {exc}"
                ) from exc
    for raw in env_paths() if paths is None else paths:
        _load_path(raw)


def _module_name(path: Path) -> str:
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:10]
    stem = path.stem if path.is_file() else path.name
    return f"_lake_plugin_{stem}_{digest}" if path.is_file() else stem


def _load_path(raw: str) -> None:
    path = Path(raw).expanduser()
    if not path.exists():
        raise PluginError(f"--plugins {raw}: no such file or folder")
    path = path.resolve()
    if path.is_dir():
        init = path / "__init__.py"
        if not init.is_file():
            raise PluginError(f"--plugins {raw}: a plugin folder must be a package (holding __init__.py)")
        files = sorted(path.rglob("*.py"))
    elif path.suffix == ".py":
        init, files = path, [path]
    else:
        raise PluginError(f"--plugins {raw}: not a .py file or a package folder")
    digest = _hash_files(files, path if path.is_dir() else path.parent)
    key = str(path)
    if _loaded_paths.get(key) == digest:
        return
    name = _module_name(path)
    plugins = _sim_plugins()
    plugins.unregister_module(name)
    for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[mod]
    spec = importlib.util.spec_from_file_location(
        name, init, submodule_search_locations=[str(path)] if path.is_dir() else None
    )
    if spec is None or spec.loader is None:
        raise PluginError(f"--plugins {raw}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise PluginError(f"plugin {raw} failed to import: {type(exc).__name__}: {exc}") from exc
    _loaded_paths[key] = digest


def unload(raw: str) -> None:
    """Forget the plugins loaded from path ``raw`` (their registry entries and module), so that another file
    may register the same names; the inverse of loading it through :func:`load`."""
    path = Path(raw).expanduser().resolve()
    name = _module_name(path)
    _sim_plugins().unregister_module(name)
    for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[mod]
    _loaded_paths.pop(str(path), None)


# -- code identity ---------------------------------------------------------------------------------------


def _hash_files(files: Iterable[Path], base: Path, extra: str = "") -> str:
    h = blake3.blake3()
    for f in sorted(files):
        data = f.read_bytes()
        rel = f.relative_to(base).as_posix()
        h.update(f"{rel}\0{len(data)}\0".encode())
        h.update(data)
    h.update(extra.encode())
    return h.hexdigest()


@dataclass(frozen=True)
class Closure:
    """The code of one plugin: its files (relative path -> text), where it comes from, and their hash."""

    plugin: str
    kind: str
    origin: str
    """``built-in``, ``file <path>`` or ``distribution <name> <version>``."""
    hash: str
    files: dict[str, str] = field(default_factory=dict)
    distribution: str | None = None
    version: str | None = None

    @property
    def builtin(self) -> bool:
        return self.origin == "built-in"

    def record(self) -> dict[str, Any]:
        return {"kind": self.kind, "origin": self.origin, "hash": self.hash}


def _distribution(module: str) -> tuple[str | None, str | None]:
    top = module.split(".")[0]
    names = metadata.packages_distributions().get(top) or []
    for name in names:
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None, None


def closure(plugin: Plugin) -> Closure:
    """The code closure of ``plugin`` as it is on disk now."""
    if plugin.builtin:
        return Closure(plugin.name, plugin.kind, "built-in", code_version())
    module = sys.modules.get(plugin.module)
    file = getattr(module, "__file__", None)
    if module is None or not file:
        raise PluginError(f"{plugin.kind} {plugin.name!r}: its module {plugin.module!r} has no file to hash")
    top_name = plugin.module.split(".")[0]
    top = sys.modules.get(top_name)
    top_path = getattr(top, "__path__", None)
    if top_path and getattr(top, "__file__", None):
        base = Path(str(top.__file__)).resolve().parent  # type: ignore[union-attr]
        files = sorted(p for p in base.rglob("*.py") if "__pycache__" not in p.parts)
        shown_base = base.parent
    else:
        f = Path(file).resolve()
        files, shown_base = [f], f.parent
    dist, version = _distribution(plugin.module)
    extra = f"\0dist\0{dist}\0{version}" if dist else ""
    origin = f"distribution {dist} {version}" if dist else f"file {files[0] if len(files) == 1 else shown_base}"
    if not dist and len(files) > 1:
        origin = f"package {base}"
    texts = {p.relative_to(shown_base).as_posix(): p.read_text(encoding="utf-8", errors="replace") for p in files}
    return Closure(plugin.name, plugin.kind, origin, _hash_files(files, shown_base, extra), texts, dist, version)


# -- resolution ------------------------------------------------------------------------------------------


def check_name(name: Any, key: str = "strategy.name") -> str:
    """Refuse what is not a plugin name (a module path, a file) before anything is imported."""
    plugins = _sim_plugins()
    if not isinstance(name, str) or not plugins.NAME_RE.match(name):
        raise SpecError(
            f"spec key {key!r}: {name!r} is not a plugin name: a spec names a registered strategy, never a module"
            " or a file (register plugins with --plugins PATH, LAKE_PLUGINS or an installed distribution)"
        )
    return name


def resolve(kind: str, name: Any, key: str = "strategy.name", extra_known: Iterable[str] = ()) -> Plugin:
    """The registered plugin ``name`` of ``kind``; unknown names are one line with a suggestion."""
    check_name(name, key)
    plugins = _sim_plugins()
    found = plugins.get(kind, name)
    if found is None:
        known = sorted({p.name for p in plugins.plugins(kind)} | set(extra_known))
        hint = difflib.get_close_matches(str(name), known, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else f" (known: {', '.join(known)})"
        raise SpecError(f"spec key {key!r}: unknown {kind} {name!r}{extra}")
    return found  # type: ignore[no-any-return]


def used_indicators(plugin: Plugin) -> list[Plugin]:
    """Registered indicators a strategy's function refers to by a global name (called directly)."""
    plugins = _sim_plugins()
    code = getattr(plugin.func, "__code__", None)
    glb = getattr(plugin.func, "__globals__", {})
    if code is None:
        return []
    by_func = {id(p.func): p for p in plugins.plugins("indicator")}
    found = [by_func[id(glb[n])] for n in code.co_names if n in glb and id(glb[n]) in by_func]
    return sorted({p.name: p for p in found}.values(), key=lambda p: p.name)


# -- the look-ahead guard --------------------------------------------------------------------------------


def _same(a: np.ndarray, b: np.ndarray) -> tuple[int, ...] | None:
    """The first index where ``a`` and ``b`` differ (NaN equals NaN), or None: (bar,) for one value per bar,
    (bar, symbol) for a portfolio's weights."""
    import numpy as np

    diff = ~((a == b) | (np.isnan(a) & np.isnan(b)))
    idx = np.argwhere(diff)
    return tuple(int(x) for x in idx[0]) if idx.size else None


def _at(at: tuple[int, ...], bars: Any) -> str:
    if len(at) == 1:
        return f"bar {at[0]}"
    return f"bar {at[0]}, symbol {bars.symbols[at[1]]!r}"


def cuts(n: int) -> list[int]:
    """Deterministic cut points inside the first ``min(n, GUARD_WINDOW)`` bars (at least 3 when n >= 4)."""
    w = min(n, GUARD_WINDOW)
    out = sorted({max(1, (w * k) // (GUARD_CUTS + 1)) for k in range(1, GUARD_CUTS + 1)} | {w})
    return [c for c in out if 0 < c <= n]


def guard(plugin: Plugin, bars: Any, values: Mapping[str, Any], full: np.ndarray, label: str) -> dict[str, Any]:
    """Check ``plugin`` for look-ahead on ``bars`` (a ``sim.Bars``, or a ``sim.Panel`` for a portfolio
    strategy): at each cut, its output on the bars up to the cut equals ``full`` (the run's output) up to that
    cut, and two calls on the same bars agree."""
    from artifact_lake.sim.plugins import check_output, check_weights, combo_label

    def checked(part: Any) -> np.ndarray:
        out = plugin(part, values)
        if plugin.kind == "portfolio_strategy":
            return check_weights(plugin, out, part.shape, values)
        return check_output(plugin, out, len(part), values)

    where = f"{plugin.kind} {plugin.name!r} ({combo_label(plugin.bind(values))}{label})"
    points = cuts(len(bars))
    for c in points:
        part = bars.slice(0, c)
        first = checked(part)
        at = _same(first, full[:c])
        if at is not None:
            raise LookAhead(
                f"look-ahead: {where}: {_at(at, bars)} is {full[at]!r} on all bars but {first[at]!r} on the first"
                f" {c} (its value depends on later bars)"
            )
        if c == points[-1]:
            again = checked(part)
            at = _same(first, again)
            if at is not None:
                raise LookAhead(
                    f"nondeterministic: {where}: {_at(at, bars)} is {first[at]!r} then {again[at]!r} on two calls"
                    " with the same bars (unseeded randomness or global state)"
                )
    return {"cuts": points, "deterministic": True}


@dataclass
class GuardLog:
    """What the guard checked during one run, for the run record."""

    checked: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, name: str, n_cuts: int) -> None:
        entry = self.checked.setdefault(name, {"combinations": 0, "cuts": 0, "determinism": 0})
        entry["combinations"] += 1
        entry["cuts"] += n_cuts
        entry["determinism"] += 1

    def merge(self, checked: Mapping[str, Mapping[str, int]], seconds: float) -> None:
        """Counts and time another process's log gathered (a Ray worker's), added to this one's."""
        for name, counts in checked.items():
            entry = self.checked.setdefault(name, {"combinations": 0, "cuts": 0, "determinism": 0})
            for key, value in counts.items():
                entry[key] = entry.get(key, 0) + value
        self.seconds += seconds

    def timed(self) -> float:
        return time.perf_counter()

    def to_dict(self) -> dict[str, Any]:
        return {
            "plugins": self.checked,
            "window": GUARD_WINDOW,
            "cuts_per_combination": GUARD_CUTS,
            "seconds": self.seconds,
        }


# -- sources as artifacts ---------------------------------------------------------------------------------


def source_table(c: Closure) -> Any:
    import pyarrow as pa

    paths = sorted(c.files)
    return pa.table(
        {
            "path": pa.array(paths, pa.string()),
            "hash": pa.array([blake3.blake3(c.files[p].encode()).hexdigest() for p in paths], pa.string()),
            "text": pa.array([c.files[p] for p in paths], pa.string()),
        }
    )


def source_diff(recorded: Mapping[str, str], current: Mapping[str, str]) -> str:
    """A unified diff between the recorded files and the installed ones."""
    out: list[str] = []
    for path in sorted(set(recorded) | set(current)):
        a = recorded.get(path, "").splitlines(keepends=True)
        b = current.get(path, "").splitlines(keepends=True)
        if a != b:
            out += difflib.unified_diff(a, b, f"recorded/{path}", f"installed/{path}")
    text = "".join(out)
    return text if text.endswith("\n") or not text else text + "\n"


def safe_out_path(out: Path, rel: str) -> Path:
    """``out / rel`` for a recorded path, refusing anything that would leave ``out`` (``../``, absolute)."""
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise PluginError(f"recorded source path {rel!r} would leave the output folder")
    return out / p
