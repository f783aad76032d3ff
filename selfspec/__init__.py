"""selfspec: lossless LLM decoding acceleration on our own compact transformer.

The public entry points: :func:`load_model`, :func:`generate` with a method from
:data:`METHODS`, :func:`complete` for one-call text, and the benchmark in `selfspec.bench`.
"""

from selfspec.complete import Completion, complete, score_replies
from selfspec.decoding import GenerationResult, Origin, Piece, generate, run_to_end
from selfspec.errors import BadInputError, ModelLoadError, SelfSpecError
from selfspec.loading import LoadedModel, load_model
from selfspec.methods import METHODS, get_method
from selfspec.model import SkipSet, Transformer
from selfspec.sampling import SamplingConfig

__all__ = [
    "Completion",
    "complete",
    "score_replies",
    "GenerationResult",
    "Origin",
    "Piece",
    "generate",
    "run_to_end",
    "BadInputError",
    "ModelLoadError",
    "SelfSpecError",
    "LoadedModel",
    "load_model",
    "METHODS",
    "get_method",
    "SkipSet",
    "Transformer",
    "SamplingConfig",
]
