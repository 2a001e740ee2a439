"""Instance-aware pixel contrastive loss (SSKD's L_pxl) and its negative sampler.

Each anchor pixel p of the weak view is pulled towards the same scene location in the strong view
and pushed from K negatives n_k drawn from the strong view's pixels of the whole mini-batch:
    s+ = <z_w(p), z_s(p')> / tau,   s-_k = <z_w(p), z_s(n_k)> / tau,
    L_pxl = -(1/N) sum_p log( e^{s+} / (e^{s+} + sum_k e^{s-_k}) ).
z_w, z_s are the L2-normalised embeddings of the projection head; p' is p's location in the strong
view (`views.correspondence`), read from z_s bilinearly and normalised again. Only pixels visible
in both views are anchors. Gradients reach both views' embeddings.

Negatives are drawn with probability proportional to w(i, j) = d(i, j)^power, where
    d(i, j) = 1 - <u(i), u(j)>,  u(p) = [m(p); e(p)] / |[m(p); e(p)]|,
    m(p) = softmax over queries of the mask logits (resized to the embedding grid) at p,
    e(p) = sum_q m(p, q) c(q),  c(q) = softmax over the C+1 classes of query q,
u(i) from the weak view's predictions, u(j) from the strong view's, all detached. Pixels of other
instances and other classes are thus the likely negatives, while pixels of the anchor's own
instance (which a plain contrastive loss would wrongly push away) are rarely drawn.

Choices of ours (not given by the paper): tau = 0.2 (middle of the paper's {0.1, 0.2, 0.4});
K = 256 (its best); "no object" kept in c, so that confidently empty queries also share a
descriptor; the loss averages over at most `max_anchors` = 2048 anchors drawn uniformly from the
valid pixels (an unbiased estimate of the mean over all of them, whose K gathered negatives of D
channels each would otherwise not fit in memory at stride 4); the pool includes every strong-view
pixel, the anchor's own positive too (drawn with weight d(p, p') ~ 0 once the views agree);
16 rejection rounds before the fallback.

The paper's memory-bank ablation (`NegativeMemory`, `memory_bank` = 10000 there): the pool also
holds the last N strong-view pixels of earlier steps, each kept with its embedding (detached, so
no gradient reaches the step that made it) and its descriptor u (so the sampler weighs it like a
pixel of the batch). Each step adds `max_anchors` pixels drawn uniformly from its strong views,
after the optimiser step; with several processes each keeps its own memory of its own batches.

The sampler never forms the P x P matrix of all pairs. Since u >= 0, d lies in [0, 1], so exact
rejection sampling works: propose j uniformly from the pool and accept it with probability
w(i, j) <= 1; an accepted proposal is an exact draw. Slots still empty after `max_rounds`
rounds (anchors similar to nearly the whole pool) are drawn exactly from the normalised weights
of their anchors, computed in chunks of anchors x pool; an anchor whose weights are all zero
(every prediction alike, as at the start of training) draws uniformly. Either way every negative
follows w exactly, in memory linear in the pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gkd_deploy.errors import ConfigError
from gkd_deploy.models.decoders.mask2former.point_sampling import point_sample

TEMPERATURE = 0.2
NUM_NEGATIVES = 256
MAX_ANCHORS = 2048
DESCRIPTORS = ("joint", "mask", "class")
#: Elements of one chunk of anchor x pool weights in the exact fallback (64 MiB of fp32).
CHUNK_ELEMENTS = 1 << 24

Predictions = tuple[torch.Tensor, torch.Tensor]  # class logits (B, Q, C+1), mask logits (B, Q, H, W)


@dataclass(frozen=True)
class NegativeSampling:
    """How negatives are weighted: w = d^power with d on the descriptor u = [m; e] ("joint"),
    m alone ("mask") or e alone ("class"); power 0 draws uniformly (no predictions needed)."""

    descriptor: str = "joint"
    power: float = 1.0

    def __post_init__(self) -> None:
        if self.descriptor not in DESCRIPTORS:
            raise ConfigError(f"negative sampling: descriptor must be one of {', '.join(DESCRIPTORS)}, "
                              f"got {self.descriptor!r}")
        if not self.power >= 0:
            raise ConfigError(f"negative sampling: power must be >= 0, got {self.power}")


#: The paper's sampler and its ablations, by name.
NEGATIVE_SAMPLINGS = {
    "instance": NegativeSampling(),
    "squared": NegativeSampling(power=2.0),
    "sqrt": NegativeSampling(power=0.5),
    "uniform": NegativeSampling(power=0.0),
    "mask": NegativeSampling(descriptor="mask"),
    "class": NegativeSampling(descriptor="class"),
}


@torch.no_grad()
def instance_descriptors(class_logits: torch.Tensor, mask_logits: torch.Tensor, size: tuple[int, int],
                         descriptor: str = "joint") -> torch.Tensor:
    """Class logits (B, Q, C+1) and mask logits (B, Q, H, W) -> unit descriptors u (B, h*w, E) on
    the (h, w) grid, row-major; E = Q + C + 1 ("joint"), Q ("mask") or C + 1 ("class")."""
    resized = F.interpolate(mask_logits.detach().float(), size=tuple(size), mode="bilinear", align_corners=False,
                            antialias=True)
    query_share = resized.softmax(1).flatten(2).transpose(1, 2)  # m: (B, h*w, Q)
    if descriptor == "mask":
        return F.normalize(query_share, dim=-1)
    class_share = query_share @ class_logits.detach().float().softmax(-1)  # e: (B, h*w, C+1)
    if descriptor == "class":
        return F.normalize(class_share, dim=-1)
    return F.normalize(torch.cat((query_share, class_share), dim=-1), dim=-1)


def _weights(similarity: torch.Tensor, power: float) -> torch.Tensor:
    """<u(i), u(j)> -> w = d^power, d = 1 - similarity clamped to [0, 1] against rounding."""
    return (1.0 - similarity).clamp(0.0, 1.0).pow(power)


@torch.no_grad()
def sample_negatives(anchor_descriptors: torch.Tensor, pool_descriptors: torch.Tensor, num_negatives: int, *,
                     power: float = 1.0, generator: torch.Generator | None = None,
                     max_rounds: int = 16) -> torch.Tensor:
    """K pool indices per anchor, drawn independently with probability w(i, j) / sum_j w(i, j).

    Args:
        anchor_descriptors: (N, E) unit, non-negative.
        pool_descriptors: (M, E) unit, non-negative.
        num_negatives: K.
        power: w = d^power; 0 = uniform.
        generator: on the descriptors' device; None: torch's default generator.
        max_rounds: rejection rounds before the exact chunked draw of what is left (0: chunked only).

    Returns:
        (N, K) int64 indices into the pool.
    """
    anchors, pool = anchor_descriptors.float(), pool_descriptors.float()
    count, pool_size, device = anchors.shape[0], pool.shape[0], pool.device
    negatives = torch.full((count * num_negatives,), -1, dtype=torch.int64, device=device)
    pending = torch.arange(count * num_negatives, device=device)  # slot = anchor * K + k
    for _ in range(max_rounds):
        if pending.numel() == 0:
            break
        proposals = torch.randint(pool_size, pending.shape, generator=generator, device=device)
        similarity = _paired_similarity(anchors, pending // num_negatives, pool, proposals)
        accepted = torch.rand(pending.shape, generator=generator, device=device) < _weights(similarity, power)
        negatives[pending[accepted]] = proposals[accepted]
        pending = pending[~accepted]
    if pending.numel():
        negatives[pending] = _draw_exactly(anchors, pool, pending, num_negatives, power, generator)
    return negatives.view(count, num_negatives)


def _paired_similarity(anchors: torch.Tensor, anchor_index: torch.Tensor, pool: torch.Tensor,
                       pool_index: torch.Tensor) -> torch.Tensor:
    """<anchors[anchor_index[s]], pool[pool_index[s]]> per slot s, `CHUNK_ELEMENTS` gathered values at a time."""
    chunk = max(1, CHUNK_ELEMENTS // anchors.shape[1])
    return torch.cat([(anchors[a] * pool[p]).sum(-1) for a, p in zip(anchor_index.split(chunk),
                                                                         pool_index.split(chunk))])


def _draw_exactly(anchors: torch.Tensor, pool: torch.Tensor, slots: torch.Tensor, num_negatives: int, power: float,
                  generator: torch.Generator | None) -> torch.Tensor:
    """A draw for each slot (anchor * K + k) from its anchor's normalised weights over the whole pool,
    `CHUNK_ELEMENTS` weights at a time; all-zero weights draw uniformly."""
    owners = torch.unique(slots // num_negatives)
    row_of = torch.full((anchors.shape[0],), -1, dtype=torch.int64, device=slots.device)
    row_of[owners] = torch.arange(owners.numel(), device=slots.device)
    chunk = max(1, CHUNK_ELEMENTS // pool.shape[0])
    draws = torch.cat([
        _multinomial_rows(_weights(anchors[part] @ pool.T, power), num_negatives, generator)
        for part in owners.split(chunk)
    ])  # (owners, K)
    return draws[row_of[slots // num_negatives], slots % num_negatives]


def _multinomial_rows(weights: torch.Tensor, count: int, generator: torch.Generator | None) -> torch.Tensor:
    """`count` draws per row of weights (R, M) -> (R, count); a row of zeros draws uniformly."""
    empty = weights.sum(1, keepdim=True) <= 0
    weights = torch.where(empty, torch.ones_like(weights), weights)
    return torch.multinomial(weights, count, replacement=True, generator=generator)


def contrastive_loss(anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor,
                     temperature: float = TEMPERATURE) -> torch.Tensor:
    """InfoNCE of anchors (N, D) with one positive (N, D) and K negatives (N, K, D) each, all unit
    vectors -> the mean over anchors of -log(e^{s+} / (e^{s+} + sum_k e^{s-_k})), in fp32 (under
    bf16 autocast, similarities scaled by 1 / tau would lose their last digits)."""
    with torch.autocast(device_type=anchors.device.type, enabled=False):
        anchors = anchors.float()
        positive = (anchors * positives.float()).sum(-1, keepdim=True) / temperature  # (N, 1)
        negative = torch.einsum("nd,nkd->nk", anchors, negatives.float()) / temperature  # (N, K)
        logits = torch.cat((positive, negative), dim=1)
        return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


class NegativeMemory:
    """The last `size` strong-view pixels of earlier steps as extra negatives, first in, first out:
    embeddings (n, D), detached, and, unless sampling is uniform, descriptors (n, E).

    A step's pixels are staged by the loss (`stage`) and written by `commit`, which the training
    loop calls after the optimiser step: a step sees the memory of the steps before it, also when
    it is interrupted and run again after a resume (`state_dict` travels in the phase's state).
    """

    def __init__(self, size: int, per_step: int) -> None:
        if size < 1 or per_step < 1:
            raise ConfigError(f"negative memory: need size >= 1 and per_step >= 1, got {size} and {per_step}")
        self.size, self.per_step = size, per_step
        self.embeddings: torch.Tensor | None = None  # (size, D) once anything was committed
        self.descriptors: torch.Tensor | None = None  # (size, E), None for uniform sampling
        self.count = 0  # filled rows
        self.position = 0  # the next row written
        self._staged: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def entries(self, device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The filled rows (embeddings, descriptors) on `device`; (None, None) while empty. Row order
        is storage order (what indices into the memory refer to)."""
        if self.count == 0:
            return None, None
        self.embeddings = self.embeddings.to(device)
        if self.descriptors is not None:
            self.descriptors = self.descriptors.to(device)
        descriptors = self.descriptors[:self.count] if self.descriptors is not None else None
        return self.embeddings[:self.count], descriptors

    @torch.no_grad()
    def stage(self, embeddings: torch.Tensor, descriptors: torch.Tensor | None,
              generator: torch.Generator | None = None) -> None:
        """Keep `per_step` of this step's pixels (embeddings (M, D), descriptors (M, E) or None),
        drawn uniformly without replacement, for the next `commit`."""
        rows = torch.randperm(embeddings.shape[0], generator=generator, device=embeddings.device)[:self.per_step]
        self._staged = (embeddings.detach()[rows].float(), None if descriptors is None else descriptors[rows].float())

    @torch.no_grad()
    def commit(self) -> None:
        """Write the staged pixels over the oldest rows (nothing staged: nothing changes)."""
        if self._staged is None:
            return
        embeddings, descriptors = self._staged
        self._staged = None
        embeddings, descriptors = embeddings[-self.size:], None if descriptors is None else descriptors[-self.size:]
        if self.embeddings is None:
            self.embeddings = embeddings.new_zeros((self.size, embeddings.shape[1]))
            if descriptors is not None:
                self.descriptors = descriptors.new_zeros((self.size, descriptors.shape[1]))
        rows = (self.position + torch.arange(embeddings.shape[0], device=self.embeddings.device)) % self.size
        self.embeddings = self.embeddings.to(embeddings.device)
        self.embeddings[rows] = embeddings
        if self.descriptors is not None and descriptors is not None:
            self.descriptors = self.descriptors.to(descriptors.device)
            self.descriptors[rows] = descriptors
        self.count = min(self.count + embeddings.shape[0], self.size)
        self.position = (self.position + embeddings.shape[0]) % self.size

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {"count": torch.tensor(self.count), "position": torch.tensor(self.position)}
        if self.embeddings is not None:
            state["embeddings"] = self.embeddings.cpu()
        if self.descriptors is not None:
            state["descriptors"] = self.descriptors.cpu()
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.count, self.position = int(state["count"]), int(state["position"])
        self.embeddings, self.descriptors = state.get("embeddings"), state.get("descriptors")
        if self.embeddings is not None and self.embeddings.shape[0] != self.size:
            raise ConfigError(f"negative memory: the saved one holds {self.embeddings.shape[0]} rows, this one "
                              f"{self.size}")
        self._staged = None


@dataclass(frozen=True)
class ContrastiveSample:
    """anchors (N,): indices into the weak view's B*h*w pixels (batch-major, row-major);
    negatives (N, K): indices into the strong view's B*hs*ws pixels, then (from B*hs*ws on) into
    the memory's rows; pool_descriptors: the strong view's (B*hs*ws, E), None when uniform."""

    anchors: torch.Tensor
    negatives: torch.Tensor
    pool_descriptors: torch.Tensor | None = None


class PixelContrastiveLoss(nn.Module):
    """L_pxl with instance-aware negatives.

    Args:
        temperature: tau.
        num_negatives: K.
        max_anchors: anchors drawn uniformly from the valid pixels per batch; None = all of them.
        sampling: a name of `NEGATIVE_SAMPLINGS` or a `NegativeSampling`.
        max_rounds: rejection-sampling rounds before the exact fallback.
        memory_bank: pixels of earlier steps kept as extra negatives (`NegativeMemory`, which then
            takes `max_anchors` pixels per step, or `MAX_ANCHORS` with no cap); 0: none.
    """

    def __init__(self, temperature: float = TEMPERATURE, num_negatives: int = NUM_NEGATIVES,
                 max_anchors: int | None = MAX_ANCHORS, sampling: str | NegativeSampling = "instance",
                 max_rounds: int = 16, memory_bank: int = 0) -> None:
        super().__init__()
        if isinstance(sampling, str):
            if sampling not in NEGATIVE_SAMPLINGS:
                raise ConfigError(f"unknown negative sampling {sampling!r}; use one of "
                                  f"{', '.join(NEGATIVE_SAMPLINGS)}")
            sampling = NEGATIVE_SAMPLINGS[sampling]
        if not temperature > 0 or num_negatives < 1 or (max_anchors is not None and max_anchors < 1):
            raise ConfigError(f"pixel contrastive loss: need temperature > 0 (got {temperature}), "
                              f"num_negatives >= 1 (got {num_negatives}) and max_anchors >= 1 or None "
                              f"(got {max_anchors})")
        self.temperature, self.num_negatives, self.max_anchors = temperature, num_negatives, max_anchors
        self.sampling, self.max_rounds = sampling, max_rounds
        if memory_bank < 0:
            raise ConfigError(f"pixel contrastive loss: memory_bank must be >= 0, got {memory_bank}")
        self.memory = NegativeMemory(memory_bank, max_anchors or MAX_ANCHORS) if memory_bank else None

    @torch.no_grad()
    def sample(self, valid: torch.Tensor, strong_size: tuple[int, int], weak_predictions: Predictions | None = None,
               strong_predictions: Predictions | None = None,
               generator: torch.Generator | None = None) -> ContrastiveSample:
        """Anchors among the valid pixels (B, h, w) and their negatives among the strong view's
        B x strong_size pixels; predictions of each view are needed unless sampling is uniform."""
        candidates = valid.flatten().nonzero().squeeze(1)
        if self.max_anchors is not None and candidates.numel() > self.max_anchors:
            order = torch.randperm(candidates.numel(), generator=generator, device=candidates.device)
            candidates = candidates[order[:self.max_anchors]]
        batch = valid.shape[0]
        pool_size = batch * strong_size[0] * strong_size[1]
        remembered, remembered_descriptors = (None, None) if self.memory is None else self.memory.entries(valid.device)
        if self.sampling.power == 0:  # uniform: no predictions needed
            pool_size += 0 if remembered is None else remembered.shape[0]
            negatives = torch.randint(pool_size, (candidates.numel(), self.num_negatives), generator=generator,
                                      device=candidates.device)
            return ContrastiveSample(candidates, negatives)
        if weak_predictions is None or strong_predictions is None:
            raise ConfigError(f"negative sampling {self.sampling} needs both views' predictions")
        anchor_descriptors = instance_descriptors(*weak_predictions, valid.shape[1:], self.sampling.descriptor)
        pool_descriptors = instance_descriptors(*strong_predictions, strong_size, self.sampling.descriptor).flatten(0, 1)
        whole_pool = (pool_descriptors if remembered_descriptors is None
                      else torch.cat((pool_descriptors, remembered_descriptors)))
        negatives = sample_negatives(anchor_descriptors.flatten(0, 1)[candidates], whole_pool,
                                     self.num_negatives, power=self.sampling.power, generator=generator,
                                     max_rounds=self.max_rounds)
        return ContrastiveSample(candidates, negatives, pool_descriptors)

    def loss(self, weak_embeddings: torch.Tensor, strong_embeddings: torch.Tensor, strong_points: torch.Tensor,
             sample: ContrastiveSample) -> torch.Tensor:
        """Embeddings (B, D, h, w) and (B, D, hs, ws), strong_points (B, h, w, 2) -> scalar L_pxl
        over the sampled anchors (0, with gradient, when there are none)."""
        if sample.anchors.numel() == 0:
            return weak_embeddings.sum() * 0.0 + strong_embeddings.sum() * 0.0
        dim = weak_embeddings.shape[1]
        anchors = weak_embeddings.flatten(2).transpose(1, 2).reshape(-1, dim)[sample.anchors]
        positives = point_sample(strong_embeddings, strong_points.flatten(1, 2))  # (B, D, h*w)
        positives = F.normalize(positives.transpose(1, 2).reshape(-1, dim)[sample.anchors], dim=-1)
        pool = strong_embeddings.flatten(2).transpose(1, 2).reshape(-1, dim)
        remembered = None if self.memory is None else self.memory.entries(pool.device)[0]
        if remembered is not None:
            pool = torch.cat((pool, remembered.to(pool.dtype)))
        return contrastive_loss(anchors, positives, pool[sample.negatives], self.temperature)

    def forward(self, weak_embeddings: torch.Tensor, strong_embeddings: torch.Tensor, strong_points: torch.Tensor,
                valid: torch.Tensor, weak_predictions: Predictions | None = None,
                strong_predictions: Predictions | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """L_pxl of one batch of view pairs.

        Args:
            weak_embeddings: z_w (B, D, h, w), unit along D.
            strong_embeddings: z_s (B, D, hs, ws), unit along D.
            strong_points: (B, h, w, 2) each weak grid cell's (x, y) in the strong view, in [0, 1]
                (`views.correspondence`).
            valid: (B, h, w) bool, True where the location is visible in both views.
            weak_predictions, strong_predictions: (class logits (B, Q, C+1), mask logits
                (B, Q, H, W)) of each view, for the sampler (detached there).
            generator: for the anchors and negatives, on the embeddings' device.
        """
        sample = self.sample(valid, strong_embeddings.shape[2:], weak_predictions, strong_predictions, generator)
        loss = self.loss(weak_embeddings, strong_embeddings, strong_points, sample)
        if self.memory is not None:
            dim = strong_embeddings.shape[1]
            self.memory.stage(strong_embeddings.flatten(2).transpose(1, 2).reshape(-1, dim), sample.pool_descriptors,
                              generator)
        return loss
