"""The optional llama.cpp peer: clear refusals always, a real run where it is installed."""

from __future__ import annotations

import pytest

from selfspec.decoding import generate, run_to_end
from selfspec.errors import BadInputError
from selfspec.llamacpp import llamacpp_available
from selfspec.methods import METHODS, get_method
from selfspec.sampling import SamplingConfig
from tests.model_helpers import bundled, tiny


def run(lm, prompt="Name three colours.", n=16):
    return run_to_end(
        generate(lm, prompt, get_method("llamacpp").run, SamplingConfig(max_new_tokens=n))
    )


def test_llamacpp_refuses_models_without_a_gguf_file():
    with pytest.raises(BadInputError, match="has none.*--model bundled"):
        run(tiny("tiny-llama"))


def test_llamacpp_is_listed_only_when_installed():
    assert METHODS["llamacpp"].installed() is llamacpp_available()


@pytest.mark.skipif(llamacpp_available(), reason="llama-cpp-python is installed here")
def test_llamacpp_without_the_package_says_how_to_install_it():
    with pytest.raises(BadInputError, match="make peers"):
        run(bundled())


@pytest.mark.bundled
@pytest.mark.skipif(not llamacpp_available(), reason="optional llama-cpp-python not installed")
def test_llamacpp_decodes_the_bundled_gguf_greedily():
    lm = bundled()
    first, again = run(lm), run(lm)
    assert len(first.tokens) > 0 and first.tokens == again.tokens  # greedy: reproducible
    assert first.text.strip()


@pytest.mark.bundled
@pytest.mark.skipif(not llamacpp_available(), reason="optional llama-cpp-python not installed")
def test_the_report_records_llama_cpp_s_version_and_threads():
    import llama_cpp
    import torch

    from selfspec.bench import environment

    lm = bundled()
    assert "llama_cpp" not in environment(lm, ["vanilla", "pld"])
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        peer = environment(lm, ["vanilla", "llamacpp"])["llama_cpp"]
    finally:
        torch.set_num_threads(before)
    assert peer["version"] == llama_cpp.__version__
    # --threads binds llama.cpp's prompt reading too, not only its decoding.
    assert peer["threads"] == peer["threads_batch"] == 1
    assert "AVX" in peer["system_info"] or "NEON" in peer["system_info"]
