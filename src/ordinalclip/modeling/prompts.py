"""Prompt learners: learnable context tokens and rank embeddings laid out as one token sequence per rank.

Layouts (reference notes §1.2), ``V`` = context (m tokens), ``r_i`` = rank embedding of rank i (n_r tokens):

    tail   : [SOT] V r_i "." [EOT]
    front  : [SOT] r_i V "." [EOT]
    middle : [SOT] V[:m//2] r_i V[m//2:] "." [EOT]

:class:`RankPromptLearner` (OrdinalCLIP) derives the C rank embeddings from C' base-rank embeddings through a
fixed interpolation matrix, so the ranks stay ordered and smooth; :class:`PlainPromptLearner` (CoOp) learns C
independent rank embeddings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol, TypedDict

import torch
from torch import nn

from ordinalclip.modeling.backbones.text import PromptEmbeddings

if TYPE_CHECKING:
    from typing_extensions import Unpack

Interpolation = Literal["linear", "inv_prop", "local_linear"]
RankPosition = Literal["tail", "front", "middle"]


class Vocabulary(Protocol):
    """What a prompt learner needs from a text tower's vocabulary."""

    width: int
    start_ids: list[int]  # what the tokenizer puts before the words ([SOT], [CLS], <s>; none for T5-style)
    end_ids: list[int]  # and after them ([EOT], [SEP], </s>); the first is the pooled end token
    pad_id: int
    period_ids: list[int]  # "." after a word (none where the tokenizer drops punctuation)

    def encode_words(self, text: str) -> list[int]: ...

    def embed_ids(self, ids: torch.Tensor | list[int]) -> torch.Tensor: ...


def interpolation_matrix(num_ranks: int, num_base_ranks: int, kind: Interpolation = "linear") -> torch.Tensor:
    """(C, C') row-normalised weights that mix C' base-rank embeddings into C rank embeddings.

    Base positions b_k = linspace(0, C-1, C') (one base: the middle); d_ik = |i - b_k| in rank units.

    * ``linear`` (reference): raw = 1 - d/(C-1) over *all* base ranks, so every rank is a global mixture;
    * ``inv_prop`` (reference): raw = 1/(d + 1e-5);
    * ``local_linear`` (extra, not in the reference): the usual two-neighbour lerp between adjacent base
      ranks.

    Rows are divided by their sum. No row can be NaN (the reference's third type, ``normal``, underflows to
    0/0 far from every base position and is deliberately not offered).
    """
    if num_ranks < 1 or num_base_ranks < 1:
        raise ValueError(f"need at least one rank and one base rank; got C={num_ranks}, C'={num_base_ranks}")
    if num_base_ranks > num_ranks:
        raise ValueError(f"more base ranks (C'={num_base_ranks}) than ranks (C={num_ranks})")
    if num_ranks == 1:
        return torch.ones(1, 1)
    ranks = torch.arange(num_ranks, dtype=torch.float32)[:, None]
    if num_base_ranks == 1:
        base = torch.tensor([(num_ranks - 1) / 2], dtype=torch.float32)
    else:
        base = torch.linspace(0, num_ranks - 1, num_base_ranks, dtype=torch.float32)
    dist = (ranks - base[None, :]).abs()
    if kind == "linear":
        raw = 1.0 - dist / (num_ranks - 1)
    elif kind == "inv_prop":
        raw = 1.0 / (dist + 1e-5)
    elif kind == "local_linear":
        spacing = (num_ranks - 1) / max(num_base_ranks - 1, 1)
        raw = (1.0 - dist / spacing).clamp(min=0.0)
    else:
        raise ValueError(f"unknown interpolation {kind!r}; expected one of linear, inv_prop, local_linear")
    weights = raw / raw.sum(dim=1, keepdim=True)
    if not torch.isfinite(weights).all():  # pragma: no cover - guarded by construction above
        raise FloatingPointError(f"interpolation {kind} produced a non-finite row")
    return weights


def _embed_names(vocab: Vocabulary, names: list[str]) -> torch.Tensor:
    """(len(names), n, D) embeddings of the names' tokens, right-padded with the pad token to the longest
    name."""
    ids = [vocab.encode_words(n) for n in names]
    empty = [n for n, i in zip(names, ids) if not i]
    if empty:
        raise ValueError(f"rank names with no tokens: {empty}")
    n = max(len(i) for i in ids)
    padded = torch.tensor([i + [vocab.pad_id] * (n - len(i)) for i in ids])
    return vocab.embed_ids(padded).clone()


def _embed_special(vocab: Vocabulary, ids: list[int]) -> torch.Tensor:
    """(len(ids), D) embeddings of fixed tokens; (0, D) for none (e.g. a tokenizer without a start token)."""
    if not ids:
        return torch.zeros(0, vocab.width, dtype=vocab.embed_ids([vocab.pad_id]).dtype)
    return vocab.embed_ids(ids).clone()


class LearnerSettings(TypedDict, total=False):
    """The keyword arguments both learners take: see the Args of :class:`RankPromptLearner` (the defaults are
    those of the learners' base class)."""

    context_init: str | None
    num_context_tokens: int
    rank_specific_context: bool
    tokens_per_rank: int
    position: RankPosition
    init_std: float


class _PromptLearner(nn.Module):
    """Context tokens, special-token embeddings, the initial rank embeddings and the layout shared by both
    learners."""

    # token embeddings of the fixed tokens (buffers)
    sot: torch.Tensor
    period: torch.Tensor
    eot: torch.Tensor
    pad: torch.Tensor

    def __init__(
        self,
        vocab: Vocabulary,
        num_ranks: int,
        context_init: str | None = None,
        num_context_tokens: int = 10,
        rank_specific_context: bool = False,
        tokens_per_rank: int = 1,
        position: RankPosition = "tail",
        init_std: float = 0.02,
    ):
        super().__init__()
        if position not in ("tail", "front", "middle"):
            raise ValueError(f"rank position must be tail, front or middle; got {position!r}")
        self.num_ranks = num_ranks
        self.position: RankPosition = position
        self._tokens_per_rank = tokens_per_rank
        self._init_std = init_std
        if context_init:
            ctx = vocab.embed_ids(vocab.encode_words(context_init)).clone()
            if ctx.shape[0] == 0:
                raise ValueError(f"context sentence {context_init!r} has no tokens")
        else:
            ctx = torch.randn(num_context_tokens, vocab.width) * init_std
        if rank_specific_context:
            ctx = ctx.unsqueeze(0).repeat(num_ranks, 1, 1)
        self.context = nn.Parameter(ctx)  # (m, D) or (C, m, D)
        self.register_buffer("sot", _embed_special(vocab, vocab.start_ids))
        self.register_buffer("period", _embed_special(vocab, vocab.period_ids))
        self.register_buffer("eot", _embed_special(vocab, vocab.end_ids))
        self.register_buffer("pad", vocab.embed_ids([vocab.pad_id])[0].clone())

    def _initial_ranks(self, vocab: Vocabulary, count: int, names: list[str] | None) -> torch.Tensor:
        """(count, n_r, D) initial rank embeddings: the tokens of the names (n_r := the longest name), or
        random ones without names (n_r := ``tokens_per_rank``)."""
        if names is None:
            return torch.randn(count, self._tokens_per_rank, vocab.width) * self._init_std
        return _embed_names(vocab, names)

    @property
    def num_context_tokens(self) -> int:
        return self.context.shape[-2]

    def rank_embeddings(self) -> torch.Tensor:
        """(C, n_r, D) rank token embeddings."""
        raise NotImplementedError

    def forward(self) -> PromptEmbeddings:
        """The C prompts, split into the prefix shared by all ranks and the per-rank suffix."""
        ranks = self.rank_embeddings()
        c = ranks.shape[0]
        ctx = self.context
        m = ctx.shape[-2]
        if self.position == "tail":
            ctx_parts: list[torch.Tensor | None] = [ctx, None]
        elif self.position == "front":
            ctx_parts = [None, ctx]
        else:
            ctx_parts = [ctx[..., : m // 2, :], ctx[..., m // 2 :, :]]
        # (tensor, shared by all ranks?) in sequence order
        segments: list[tuple[torch.Tensor, bool]] = [(self.sot, True)]
        if ctx_parts[0] is not None:
            segments.append((ctx_parts[0], ctx.dim() == 2))
        segments.append((ranks, False))
        if ctx_parts[1] is not None:
            segments.append((ctx_parts[1], ctx.dim() == 2))
        segments += [(self.period, True), (self.eot, True)]

        n_shared = 0
        while segments[n_shared][1]:
            n_shared += 1
        shared_parts = [t for t, _ in segments[:n_shared]]
        prefix = torch.cat(shared_parts, dim=0) if shared_parts else ranks.new_zeros(0, ranks.shape[-1])
        suffix = torch.cat([t.expand(c, -1, -1) if shared else t for t, shared in segments[n_shared:]], dim=1)
        # the first end token (the last token where the tokenizer adds none)
        end = prefix.shape[0] + suffix.shape[1] - max(self.eot.shape[0], 1)
        eot_index = torch.full((c,), end, dtype=torch.long, device=suffix.device)
        return PromptEmbeddings(prefix=prefix, suffix=suffix, eot_index=eot_index, pad=self.pad)


class RankPromptLearner(_PromptLearner):
    """OrdinalCLIP's learner: C rank embeddings interpolated from C' learnable base-rank embeddings.

    Args:
        vocab: the text tower (its tokenizer and token embeddings initialise the parameters).
        num_ranks: C.
        num_base_ranks: C'.
        interpolation: see :func:`interpolation_matrix`.
        base_rank_names: exactly C' names whose token embeddings initialise the base ranks (n_r := longest
            name).
        **settings: the :class:`LearnerSettings` both learners share: ``context_init`` (a sentence whose
            tokens initialise the context, m := its token count; None for random), ``num_context_tokens`` (m
            when the context is random), ``rank_specific_context`` (one context per rank (C, m, D) instead of
            a shared one (m, D)), ``tokens_per_rank`` (n_r for random base ranks), ``position`` (where the
            rank tokens go), ``init_std`` (std of the random initialisations, 0.02 as the reference).
    """

    def __init__(
        self,
        vocab: Vocabulary,
        num_ranks: int,
        num_base_ranks: int = 3,
        interpolation: Interpolation = "linear",
        *,
        base_rank_names: list[str] | None = None,
        **settings: Unpack[LearnerSettings],
    ):
        super().__init__(vocab, num_ranks, **settings)
        if base_rank_names is not None and len(base_rank_names) != num_base_ranks:
            raise ValueError(
                f"the rank learner needs exactly C'={num_base_ranks} base-rank names (one per base rank), "
                f"got {len(base_rank_names)}"
                + (
                    f" (that is C={num_ranks}, the count the plain/CoOp learner takes)"
                    if len(base_rank_names) == num_ranks
                    else ""
                )
            )
        base = self._initial_ranks(vocab, num_base_ranks, base_rank_names)
        self.base_ranks = nn.Parameter(base)  # (C', n_r, D)
        self.register_buffer("interpolation", interpolation_matrix(num_ranks, num_base_ranks, interpolation))

    def rank_embeddings(self) -> torch.Tensor:
        """(C, n_r, D): r_i = sum_k W_ik R'_k."""
        return torch.einsum("ck,knd->cnd", self.interpolation, self.base_ranks)


class PlainPromptLearner(_PromptLearner):
    """CoOp's learner: C independent rank embeddings (random, or from exactly C ``rank_names``); the other
    arguments are those of :class:`RankPromptLearner`."""

    def __init__(
        self,
        vocab: Vocabulary,
        num_ranks: int,
        *,
        rank_names: list[str] | None = None,
        **settings: Unpack[LearnerSettings],
    ):
        super().__init__(vocab, num_ranks, **settings)
        if rank_names is not None and len(rank_names) != num_ranks:
            raise ValueError(
                f"the plain (CoOp) learner needs exactly C={num_ranks} rank names, got {len(rank_names)}"
            )
        self.ranks = nn.Parameter(self._initial_ranks(vocab, num_ranks, rank_names))  # (C, n_r, D)

    def rank_embeddings(self) -> torch.Tensor:
        return self.ranks
