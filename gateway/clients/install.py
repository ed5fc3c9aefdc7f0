"""`gateway clients codex|opencode --install`: merge the generated settings into the client's own config file.

The user's file is edited, never replaced: only the keys the gateway owns are written (Codex: `model`,
`model_provider`, `model_catalog_json`, `[model_providers.mlxgw]` and one `[profiles.<slug>]` per served name;
OpenCode: `provider.mlxgw`, `model`, `small_model`, and `$schema` when absent), everything else stays as it was,
comments and layout included (tomlkit keeps them). Profiles a previous install wrote for models no longer served
are removed. The old file is copied to `<name>.bak-<timestamp>` before it changes; an install that changes
nothing writes nothing. The merged document is parsed again and checked before it is written, so a file the
merge cannot express is left alone with an error rather than half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gateway.clients.configs import PROVIDER_ID

__all__ = ["InstallError", "Installed", "install_codex", "install_opencode", "merge_codex", "merge_opencode"]

# The top-level tables whose entries the gateway owns one by one (the rest of each table is the user's).
_CODEX_SECTIONS = ("model_providers", "profiles")


class InstallError(Exception):
    """The file cannot be merged safely; nothing was written."""


@dataclass
class Installed:
    path: Path
    action: Literal["created", "updated", "unchanged"]
    backup: Path | None = None
    changes: list[str] = field(default_factory=list)  # one line per key the install added, changed or removed
    kept: list[str] = field(default_factory=list)  # the user's keys it left alone

    def report(self) -> list[str]:
        lines = [f"{self.path}: {self.action}"]
        if self.backup is not None:
            lines.append(f"  backed up the previous file to {self.backup}")
        lines += [f"  {change}" for change in self.changes]
        if self.kept:
            lines.append(f"  kept: {', '.join(self.kept)}")
        return lines


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _plain(value: Any) -> Any:
    unwrap = getattr(value, "unwrap", None)
    return unwrap() if callable(unwrap) else value


# ------------------------------------------------------------------ Codex (TOML)


def merge_codex(existing: str, generated: str) -> tuple[str, list[str], list[str]]:
    """(merged text, changes, kept keys): `generated` (what `gateway clients codex` prints) merged into `existing`."""
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    try:
        doc = tomlkit.parse(existing)
    except TOMLKitError as exc:
        raise InstallError(f"not valid TOML ({exc}); fix it or move it away") from None
    new = tomlkit.parse(generated.rstrip("\n") + "\n\n")  # each table it adds ends with a blank line
    changes: list[str] = []
    for key, value in new.items():
        if key in _CODEX_SECTIONS:
            changes += _merge_section(doc, key, value)
        else:
            old = doc.get(key)
            if old is None:
                changes.append(f"{key}: set to {_shown(_plain(value))}")
            elif _plain(old) != _plain(value):
                changes.append(f"{key}: {_shown(_plain(old))} -> {_shown(_plain(value))}")
            else:
                continue
            doc[key] = value
    merged = tomlkit.dumps(doc)
    _verify_codex(merged, new.unwrap())
    return merged, changes, _codex_kept(doc, new.unwrap())


def _merge_section(doc: Any, key: str, entries: Any) -> list[str]:
    import tomlkit

    section = doc.get(key)
    if section is None:
        section = tomlkit.table(is_super_table=True)
        doc[key] = section
    elif not isinstance(section, dict):
        raise InstallError(f"'{key}' is not a table; fix it or move the file away")
    changes = []
    for name, table in entries.items():
        old = section.get(name)
        if old is not None and _plain(old) == _plain(table):
            continue
        changes.append(f"[{key}.{name}]: {'added' if old is None else 'replaced'}")
        section[name] = table
    if key == "profiles":  # profiles an earlier install wrote for models this manifest no longer serves
        for name in [n for n, t in section.items() if n not in entries and _ours(t)]:
            del section[name]
            changes.append(f"[profiles.{name}]: removed (no longer served)")
    return changes


def _ours(table: Any) -> bool:
    return isinstance(table, dict) and _plain(table).get("model_provider") == PROVIDER_ID


def _codex_kept(doc: Any, owned: dict[str, Any]) -> list[str]:
    kept = []
    for key, value in doc.items():
        if key in _CODEX_SECTIONS and isinstance(value, dict):
            kept += [f"{key}.{name}" for name in value if name not in owned.get(key, {})]
        elif key not in owned:
            kept.append(key)
    return kept


def _verify_codex(merged: str, owned: dict[str, Any]) -> None:
    """The merged text parses and holds exactly the generated values (tomlkit cannot express every layout)."""
    try:
        parsed = tomllib.loads(merged)
    except tomllib.TOMLDecodeError as exc:
        raise InstallError(f"merging would not give valid TOML ({exc}); merge by hand") from None
    for key, value in owned.items():
        if key in _CODEX_SECTIONS:
            wrong = [name for name, table in value.items() if parsed.get(key, {}).get(name) != table]
        else:
            wrong = [] if parsed.get(key) == value else [key]
        if wrong:
            raise InstallError(f"merging did not give the intended '{key}' ({', '.join(wrong)}); merge by hand")


def install_codex(path: Path, generated: str) -> Installed:
    """Create or update Codex's config.toml at `path` (its directory is created if missing)."""
    if not path.exists():
        _write(path, generated)
        return Installed(path, "created", changes=["wrote the gateway's settings (model, provider, profiles)"])
    existing = _read(path)
    merged, changes, kept = merge_codex(existing, generated)
    return _update(path, existing, merged, changes, kept)


# ------------------------------------------------------------------ OpenCode (JSON)


def merge_opencode(existing: str, generated: dict[str, Any]) -> tuple[str, list[str], list[str]]:
    """(merged text, changes, kept keys): the provider block `generated` merged into opencode.json text."""
    try:
        doc = json.loads(existing) if existing.strip() else {}
    except json.JSONDecodeError as exc:
        raise InstallError(f"not plain JSON ({exc.msg} at line {exc.lineno}; comments are not supported here); "
                           "merge the block `gateway clients opencode` prints by hand") from None
    if not isinstance(doc, dict):
        raise InstallError("not a JSON object; fix it or move it away")
    changes: list[str] = []
    if "$schema" not in doc:
        doc = {"$schema": generated["$schema"], **doc}
        changes.append(f"$schema: set to {_shown(generated['$schema'])}")
    providers = doc.setdefault("provider", {})
    if not isinstance(providers, dict):
        raise InstallError("'provider' is not an object; fix it or move the file away")
    block = generated["provider"][PROVIDER_ID]
    if providers.get(PROVIDER_ID) != block:
        changes.append(f"provider.{PROVIDER_ID}: {'added' if PROVIDER_ID not in providers else 'replaced'}")
        providers[PROVIDER_ID] = block
    for key in ("model", "small_model"):
        if key not in doc:
            changes.append(f"{key}: set to {_shown(generated[key])}")
        elif doc[key] != generated[key]:
            changes.append(f"{key}: {_shown(doc[key])} -> {_shown(generated[key])}")
        doc[key] = generated[key]
    owned = {"$schema", "provider", "model", "small_model"}
    kept = [key for key in doc if key not in owned] + [f"provider.{name}" for name in providers if name != PROVIDER_ID]
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n", changes, kept


def install_opencode(path: Path, generated: dict[str, Any]) -> Installed:
    """Create or update an opencode.json at `path` (its directory is created if missing)."""
    if not path.exists():
        _write(path, json.dumps(generated, indent=2, ensure_ascii=False) + "\n")
        return Installed(path, "created", changes=[f"wrote provider.{PROVIDER_ID}, model and small_model"])
    existing = _read(path)
    merged, changes, kept = merge_opencode(existing, generated)
    return _update(path, existing, merged, changes, kept)


# ------------------------------------------------------------------ files


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InstallError(f"cannot read it: {exc}") from None


def _update(path: Path, existing: str, merged: str, changes: list[str], kept: list[str]) -> Installed:
    if merged == existing:
        return Installed(path, "unchanged", kept=kept)
    backup = backup_path(path)
    shutil.copy2(path, backup)
    _write(path, merged)
    return Installed(path, "updated", backup=backup, changes=changes, kept=kept)


def backup_path(path: Path, now: float | None = None) -> Path:
    """`<path>.bak-<YYYYmmdd-HHMMSS>`, with `-1`, `-2` ... when that name is taken."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if now is None else now))
    candidate = path.with_name(f"{path.name}.bak-{stamp}")
    for n in range(1, 1000):
        if not candidate.exists():
            return candidate
        candidate = path.with_name(f"{path.name}.bak-{stamp}-{n}")
    raise InstallError(f"too many backups of {path} this second")


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def _write(path: Path, text: str) -> None:
    """Atomically: a temporary file in the same directory, renamed over `path` (keeping its permissions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask()
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as sink:
            sink.write(text)
        os.chmod(temporary, mode)  # mkstemp made it 0600
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
