"""The code a sandbox runs: files given inline, a directory on Arsenal's host, a template or a
generated application — all turned into one :class:`SandboxSource` (files plus how to start the
application), which the sandbox compiles inside itself."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["MAX_FILE_BYTES", "MAX_FILES", "MAX_TOTAL_BYTES", "SandboxSource"]

MAX_FILES = 200
MAX_FILE_BYTES = 1024 * 1024
MAX_TOTAL_BYTES = 8 * 1024 * 1024
_SUFFIXES = {"elixir": (".ex", ".exs"), "erlang": (".erl", ".hrl", ".app.src")}
_APP = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_MODULE = re.compile(r"^(?:[A-Z][A-Za-z0-9_]*(?:\.[A-Z][A-Za-z0-9_]*)*|[a-z][a-z0-9_]*)$")


class SandboxSource(BaseModel):
    """Source files (relative path -> text) and, optionally, the OTP application they make."""

    model_config = ConfigDict(extra="forbid")

    language: Literal["elixir", "erlang"] = "elixir"
    files: dict[str, str] = Field(
        description="Relative path -> source text (.ex for Elixir; .erl/.hrl for Erlang)."
    )
    app: str | None = Field(
        None, description="The OTP application to start, e.g. `shop`; none to only load modules."
    )
    mod: str | None = Field(None, description="Its callback module, e.g. `Shop.Application` or `shop_app`.")
    applications: list[str] = Field(
        default_factory=list, max_length=32, description="Applications to start first."
    )

    @field_validator("files")
    @classmethod
    def _files(cls, files: dict[str, str]) -> dict[str, str]:
        if not files:
            raise ValueError("no files: give at least one source file")
        if len(files) > MAX_FILES:
            raise ValueError(f"{len(files)} files; a sandbox takes at most {MAX_FILES}")
        total = 0
        for name, text in files.items():
            path = PurePosixPath(name)
            if path.is_absolute() or ".." in path.parts or not path.parts or "\\" in name:
                raise ValueError(f"{name!r}: file names must be relative paths without '..'")
            size = len(text.encode())
            if size > MAX_FILE_BYTES:
                raise ValueError(f"{name}: {size} bytes; one file may have at most {MAX_FILE_BYTES}")
            total += size
        if total > MAX_TOTAL_BYTES:
            raise ValueError(f"the files have {total} bytes in all; at most {MAX_TOTAL_BYTES}")
        return files

    @field_validator("app")
    @classmethod
    def _app(cls, value: str | None) -> str | None:
        if value is not None and not _APP.match(value):
            raise ValueError(f"{value!r} is not an OTP application name (lowercase, digits, _)")
        return value

    @field_validator("mod")
    @classmethod
    def _mod(cls, value: str | None) -> str | None:
        if value is not None and not _MODULE.match(value.removeprefix("Elixir.")):
            raise ValueError(f"{value!r} is not a module name")
        return value

    @field_validator("applications")
    @classmethod
    def _apps(cls, values: list[str]) -> list[str]:
        for value in values:
            cls._app(value)
        return values

    @model_validator(mode="after")
    def _suffixes(self) -> SandboxSource:
        wanted = _SUFFIXES[self.language]
        compiled = [name for name in self.files if name.endswith(wanted[0])]
        if not compiled:
            raise ValueError(f"no {wanted[0]} file among the files of this {self.language} source")
        return self

    def compiled_files(self) -> list[tuple[str, str]]:
        """Every file, in a stable order (the sandbox compiles the .ex/.erl ones)."""
        return sorted(self.files.items())

    def module_atom(self, name: str) -> str:
        """A module as the VM names it: ``Shop.Application`` -> ``Elixir.Shop.Application``."""
        return module_atom(name, self.language)

    @classmethod
    def from_directory(cls, path: Path) -> SandboxSource:
        """A mix project (``mix.exs`` and ``lib/``) or an Erlang one (``src/`` with an ``.app.src``)."""
        if not path.is_dir():
            raise ValueError(f"{path} is not a directory")
        if (path / "mix.exs").is_file():
            return cls._mix_project(path)
        if (path / "src").is_dir():
            return cls._erlang_project(path)
        raise ValueError(f"{path} is neither a mix project (mix.exs) nor an Erlang one (src/)")

    @classmethod
    def _mix_project(cls, path: Path) -> SandboxSource:
        mix = (path / "mix.exs").read_text()
        app = re.search(r"app:\s*:(\w+)", mix)
        mod = re.search(r"mod:\s*\{\s*([A-Z][\w.]*)", mix)
        files = _read(path, "lib/**/*.ex")
        return cls(
            language="elixir",
            files=files,
            app=app.group(1) if app else None,
            mod=mod.group(1) if mod else None,
            applications=["logger"] if "logger" in mix else [],
        )

    @classmethod
    def _erlang_project(cls, path: Path) -> SandboxSource:
        files = _read(path, "src/**/*.erl") | _read(path, "src/**/*.hrl") | _read(path, "include/*.hrl")
        app_src = next((path / "src").glob("*.app.src"), None)
        app = mod = None
        apps: list[str] = []
        if app_src is not None:
            text = app_src.read_text()
            found = re.search(r"\{\s*application\s*,\s*'?(\w+)", text)
            app = found.group(1) if found else None
            found = re.search(r"\{\s*mod\s*,\s*\{\s*'?(\w+)", text)
            mod = found.group(1) if found else None
            found = re.search(r"\{\s*applications\s*,\s*\[([^\]]*)\]", text)
            if found:
                apps = [a.strip(" '\n\t") for a in found.group(1).split(",") if a.strip(" '\n\t")]
        return cls(
            language="erlang",
            files=files,
            app=app,
            mod=mod,
            applications=[a for a in apps if a not in ("kernel", "stdlib")],
        )


def module_atom(name: str, language: str) -> str:
    if language == "elixir" and name[:1].isupper() and not name.startswith("Elixir."):
        return f"Elixir.{name}"
    return name


def _read(root: Path, pattern: str) -> dict[str, str]:
    return {
        str(file.relative_to(root)): file.read_text() for file in sorted(root.glob(pattern)) if file.is_file()
    }
