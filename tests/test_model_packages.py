"""The offline model packages: pieces joined in order, checked, reused; bad pieces refused.

Most tests build small fake packages in a temporary folder (a finder maps package names
to folders), so they run everywhere; the tests on the real files run where `make models`
has installed them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from selfspec.errors import ModelLoadError
from selfspec.model_packages import (
    MODEL_PACKAGES,
    ModelPackage,
    Part,
    installed_models,
    model_file,
)

ROOT = Path(__file__).resolve().parent.parent


def fake_model(tmp_path: Path, pieces: list[bytes], sha: str | None = None):
    """A ModelPackage over fake packages pkg_1..pkg_n holding `pieces`, and its finder."""
    folders = {}
    parts = []
    for i, data in enumerate(pieces, start=1):
        folder = tmp_path / "site" / f"pkg_{i}"
        (folder / "data").mkdir(parents=True)
        (folder / "data" / f"part{i}.bin").write_bytes(data)
        folders[f"pkg_{i}"] = folder
        parts.append(Part(f"pkg_{i}", f"data/part{i}.bin", len(data)))
    whole = b"".join(pieces)
    model = ModelPackage(
        "fake",
        "Fake-1B",
        tuple(parts),
        len(whole),
        sha or hashlib.sha256(whole).hexdigest(),
        "none",
        "0",
    )
    return model, folders.get


def test_pieces_are_joined_in_order_checked_and_reused(tmp_path):
    pieces = [b"GGUF" + bytes(range(200)), b"second piece", b"x" * 5000]
    model, find = fake_model(tmp_path, pieces)
    path = model_file(model, find, cache=tmp_path / "cache")
    assert path.read_bytes() == b"".join(pieces)
    before = path.stat().st_mtime_ns
    assert model_file(model, find, cache=tmp_path / "cache") == path
    assert path.stat().st_mtime_ns == before  # reused, not joined again


def test_a_missing_package_names_it_and_make_models(tmp_path):
    model, find = fake_model(tmp_path, [b"a" * 10, b"b" * 10])
    with pytest.raises(ModelLoadError, match=r"missing pkg-2.*make models"):
        model_file(model, lambda name: None if name == "pkg_2" else find(name), tmp_path / "c")
    assert not (tmp_path / "c" / "models" / "fake.gguf").exists()


def test_a_piece_of_the_wrong_size_is_refused(tmp_path):
    model, find = fake_model(tmp_path, [b"a" * 10, b"b" * 10])
    (find("pkg_1") / "data" / "part1.bin").write_bytes(b"a" * 9)
    with pytest.raises(ModelLoadError, match=r"pkg-1 is damaged.*9 bytes, not 10.*make models"):
        model_file(model, find, tmp_path / "c")


def test_a_hash_mismatch_leaves_nothing_half_assembled(tmp_path):
    model, find = fake_model(tmp_path, [b"a" * 10, b"b" * 10], sha="0" * 64)
    cache = tmp_path / "c"
    with pytest.raises(ModelLoadError, match=r"SHA-256.*make models"):
        model_file(model, find, cache)
    assert [p.name for p in (cache / "models").iterdir()] == [".assemble.lock"]


def test_a_changed_piece_is_noticed_after_joining(tmp_path):
    """A reinstalled package (new piece file) makes the joined file be checked again."""
    model, find = fake_model(tmp_path, [b"a" * 10, b"b" * 10])
    model_file(model, find, tmp_path / "c")
    piece = find("pkg_2") / "data" / "part2.bin"
    piece.write_bytes(b"c" * 10)  # same size, other bytes, newer file
    with pytest.raises(ModelLoadError, match="SHA-256"):
        model_file(model, find, tmp_path / "c")


def test_make_models_installs_exactly_the_pinned_packages():
    lines = (ROOT / "requirements-models.txt").read_text().splitlines()
    listed = [line for line in lines if line and not line.startswith("#")]
    assert listed == [r for m in MODEL_PACKAGES.values() for r in m.requirements]
    assert "make models" in (ROOT / "README.md").read_text()


def test_without_the_packages_loading_says_make_models(monkeypatch, tmp_path):
    from selfspec import loading, model_packages

    monkeypatch.setattr(model_packages, "find_package", lambda name: None)
    monkeypatch.setattr(
        loading, "model_file", lambda name: model_packages.model_file(name, lambda n: None)
    )
    with pytest.raises(ModelLoadError, match="make models"):
        loading.load_model("qwen2.5-coder-0.5b")


real = pytest.mark.skipif(
    not installed_models(), reason="the model packages are not installed (`make models`)"
)


@real
@pytest.mark.parametrize("name", installed_models() or ["none"])
def test_real_files_load_and_match_their_transformers_twin(name):
    """The engine on the file's blocks against transformers on the same values (dense
    float32): the same next tokens on a real prompt, logits within float32 noise."""
    from selfspec.loading import load_model

    lm = load_model(name)
    ids = lm.encode("Write a Python function that reverses a string.")
    with torch.inference_mode():
        ours = lm.engine.forward(torch.tensor([ids]), lm.engine.new_cache(len(ids) + 1), 0)[0]
        ref = lm.hf_model(torch.tensor([ids])).logits[0]
    assert torch.equal(ours.argmax(-1), ref.argmax(-1))
    assert (ours - ref).abs().max() < 1e-3 * ref.abs().max()
