"""Classic speculative decoding: a smaller model with the same tokenizer drafts.

The draft model runs on our engine with its own KV cache, which the drafter keeps level
with the committed text: before each draft it compares the tokens whose keys the cache
holds with the committed ones, keeps the common prefix and feeds the rest in one pass
(the prompt at the start, the last accepted draft token after a fully accepted draft).
Rejected draft tokens are rolled back the same way the target's are: by position, their
entries are overwritten before anything reads them. A new generation (a new target
cache) starts a new draft cache.

Drafting stops early at a token the draft model is unsure of, with the same adaptive
threshold as skip-layer drafting. The draft scores a restricted vocabulary
(`DRAFT_HEAD_TOKENS`), read from the head's own blocks.
"""

from __future__ import annotations

import torch

from selfspec.drafters.chain import draft_chain
from selfspec.drafters.skip import AdaptiveThreshold
from selfspec.errors import BadInputError
from selfspec.kv_cache import KVCache
from selfspec.loading import LoadedModel
from selfspec.speculative import Draft, DraftContext, Drafter, Probe

__all__ = ["DraftModelDrafter", "check_same_tokenizer", "DRAFT_HEAD_TOKENS"]

# The draft model scores only the first ids of its vocabulary (and its end tokens): a BPE
# vocabulary is numbered in merge order, so low ids are the frequent pieces, and the
# draft's LM head (a large share of a small model's weights with a 150,000-token
# vocabulary) shrinks to a fraction. Verification still scores every token, so this only
# changes which drafts are proposed, never the output.
DRAFT_HEAD_TOKENS = 32768


class DraftModelDrafter(Drafter):
    def __init__(
        self,
        draft: LoadedModel,
        max_draft: int = 10,
        threshold: AdaptiveThreshold | None = None,
        head_tokens: int | None = DRAFT_HEAD_TOKENS,
    ) -> None:
        if max_draft < 1:
            raise BadInputError(f"The maximum draft length must be at least 1, got {max_draft}.")
        self.lm = draft
        self.max_draft = max_draft
        self.threshold = threshold or AdaptiveThreshold()
        engine = draft.engine
        self.vocab = engine.cfg.vocab_size
        self.head_ids: torch.Tensor | None = None
        if head_tokens is not None and head_tokens < self.vocab:
            ids = sorted({*range(head_tokens), *draft.eos_ids})
            self.head_ids = torch.tensor(ids, device=engine.device)
            self._head = engine.head_block_rows(self.head_ids)
        self._cache: KVCache | None = None
        self._serves: KVCache | None = None  # the target cache of the generation served
        self._fed: list[int] = []  # the tokens whose keys and values the draft cache holds

    def prepare(self, ctx: DraftContext) -> None:
        """Bring the draft cache level with the committed text before `ctx.last`, except
        for one missing token (the last draft token, after a draft accepted in full): that
        one rides along with the draft's first pass, two rows for little more than one."""
        engine = self.lm.engine
        if self._serves is not ctx.cache:  # a new generation
            self._cache = engine.new_cache(ctx.cache.max_len)
            self._serves, self._fed = ctx.cache, []
        committed = ctx.tokens[:-1]
        n = _common_prefix(self._fed, committed)
        if len(committed) - n > 1:  # the prompt: a pass of its own, apart from drafting
            x = torch.tensor([committed[n:]], device=engine.device)
            engine.run_layers(engine.embed(x), self._cache, n)  # keys and values only
            n = len(committed)
        self._fed = committed[:n]

    def draft(self, ctx: DraftContext, probe: Probe | None = None) -> Draft:
        self.prepare(ctx)  # a no-op when the loop has just prepared
        engine = self.lm.engine
        pending = ctx.tokens[len(self._fed) : -1]  # at most one token, fed with the first

        def logits_at(tok: int, i: int) -> torch.Tensor:
            feed = [*pending, tok] if i == 0 else [tok]
            x = torch.tensor([feed], device=engine.device)
            start = ctx.pos + i - len(feed) + 1
            if self.head_ids is None:
                return engine.forward(x, self._cache, start, last_only=True)[0, -1]  # [V]
            h = engine.run_layers(engine.embed(x), self._cache, start)[:, -1:]
            return engine.logits(h, self._head)[0, -1].float()  # [N], over head_ids

        k = min(self.max_draft, ctx.max_tokens)
        draft = draft_chain(ctx, k, self.threshold.g, logits_at, self.head_ids, self.vocab)
        self._fed = [*ctx.tokens, *draft.tokens[:-1]]
        return draft

    def update(self, draft: Draft, accepted: int) -> None:
        self.threshold.update(len(draft.tokens), accepted, hit_max=draft.state)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def check_same_tokenizer(target: LoadedModel, draft: LoadedModel) -> None:
    """Refuse a draft model whose tokens mean something else than the target's."""
    if not _same_vocabulary(target, draft):
        raise BadInputError(
            f"The draft model {draft.name} does not share {target.name}'s tokenizer, so its "
            "tokens cannot be verified. Pick a draft model of the same family."
        )


def _same_vocabulary(target: LoadedModel, draft: LoadedModel) -> bool:
    vocab = getattr(target.tokenizer, "get_vocab", None)
    other = getattr(draft.tokenizer, "get_vocab", None)
    if vocab is None or other is None:  # tokenizers without a vocabulary: same class
        return type(target.tokenizer) is type(draft.tokenizer)
    return vocab() == other() and target.eos_ids == draft.eos_ids
