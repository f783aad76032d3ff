"""Which methods apply to which model, decided from names and files without loading it."""

from __future__ import annotations

from selfspec.methods import METHODS, unavailable


def test_every_model_can_run_plain_decoding_prompt_lookup_and_the_hf_peers():
    for source in ("bundled", "tiny-llama", "qwen2.5-coder-1.5b", "gemma3-270m"):
        for name in ("vanilla", "pld", "hf", "hf-pld", "hf-early-exit"):
            assert unavailable(name, source) is None


def test_skip_and_kangaroo_need_the_model_s_own_files(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSPEC_DATA_DIR", str(tmp_path))
    assert "skip profile" in unavailable("skip", "tiny-llama")
    assert "Kangaroo adapter" in unavailable("kangaroo", "tiny-llama")
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "tiny-llama.skip.json").write_text("{}")
    (tmp_path / "adapters").mkdir()
    (tmp_path / "adapters" / "tiny-llama.kangaroo.safetensors").write_bytes(b"")
    assert unavailable("skip", "tiny-llama") is None
    assert unavailable("kangaroo", "tiny-llama") is None
    assert unavailable("skip", "bundled") is None  # shipped with the package


def test_draft_model_needs_a_smaller_model_of_the_family(monkeypatch):
    monkeypatch.delenv("SELFSPEC_DRAFT_MODEL", raising=False)
    assert unavailable("draft-model", "bundled") is not None
    monkeypatch.setenv("SELFSPEC_DRAFT_MODEL", "tiny-qwen2")
    assert unavailable("draft-model", "tiny-llama") is None


def test_llamacpp_runs_only_gguf_models():
    if METHODS["llamacpp"].installed():
        assert unavailable("llamacpp", "bundled") is None
        assert "GGUF" in unavailable("llamacpp", "tiny-llama")
    else:
        assert "make peers" in unavailable("llamacpp", "bundled")
