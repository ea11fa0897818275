"""PromptState: a prompt tree encoded for the predictor (query embeddings per detect group,
CLIP texts per classify group, the thresholds core/thresholds.py chose), built off the inference
thread and swapped as one reference."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from ..models import LabelTooLongError
from ..models.clip import ClipModel
from ..models.owl import OwlModel
from .prompt import CLASSIFY, DETECT, Label, PromptError, Tree, check_runnable, parse_prompt
from .queries import QueryStore
from .settings import PredictorConfig, check_fraction
from .thresholds import resolve

__all__ = ["PromptEncoder", "PromptState"]


@dataclass(frozen=True)
class PromptState:
    """Immutable prompt + encoded queries; built off the inference thread, swapped atomically."""

    tree: Tree
    prompt: str
    thresholds: dict[int, float]  # detect label index -> threshold
    explicit: frozenset[int] = frozenset()  # labels whose threshold ignores config.threshold
    detect_queries: dict[int, torch.Tensor] = field(default_factory=dict)  # node -> [K, D]
    classify_texts: dict[int, torch.Tensor] = field(default_factory=dict)  # node -> [K, D]
    neutral_text: torch.Tensor | None = None  # [1, D] CLIP embedding of NEUTRAL_PROMPT

    def threshold(self, label_index: int, config: PredictorConfig) -> float:
        """Rule 4 of core/thresholds.py: labels no earlier rule chose use the frame's config."""
        if label_index in self.explicit:
            return self.thresholds[label_index]
        return float(config.threshold)


class PromptEncoder:
    """Encodes prompts with one predictor's models and reference queries."""

    def __init__(
        self, owl: OwlModel, clip: ClipModel | None, queries: QueryStore, default_threshold: float
    ):
        self.owl, self.clip, self.queries = owl, clip, queries
        self.default_threshold = default_threshold

    def encode(
        self,
        prompt: str | Tree,
        threshold: float | None = None,
        label_thresholds: Mapping[str, float] | None = None,
    ) -> PromptState:
        """Parse + encode a prompt; only labels never seen before run a text encoder."""
        tree = parse_prompt(prompt) if isinstance(prompt, str) else prompt
        if not isinstance(tree, Tree):
            raise TypeError(f"prompt must be a str or Tree, got {type(prompt).__name__}")
        check_runnable(tree)
        text = prompt if isinstance(prompt, str) else tree.to_prompt()
        default = check_fraction(
            self.default_threshold if threshold is None else threshold, "threshold"
        )
        overrides = dict(label_thresholds or {})
        tree.detect_thresholds(default, overrides)  # validates the values
        chosen = {
            i: resolve(tree.labels[i], default, overrides, threshold) for i in tree.detect_labels()
        }
        thresholds = {i: value for i, (value, _) in chosen.items()}
        explicit = frozenset(i for i, (_, fixed) in chosen.items() if fixed)
        try:
            detect_queries = self._detect_queries(tree)
            classify_texts, neutral = self._classify_texts(tree)
        except LabelTooLongError as error:
            column = next((lb.column for lb in tree.labels if lb.text == error.label), 0)
            raise PromptError(str(error), column) from error
        return PromptState(
            tree, text, thresholds, explicit, detect_queries, classify_texts, neutral
        )

    def _detect_queries(self, tree: Tree) -> dict[int, torch.Tensor]:
        """[K, D] query embeddings per detect group: text labels encoded, $name labels looked up."""
        labels = tree.labels
        texts = [labels[i].text for i in tree.detect_labels() if not labels[i].is_image_query]
        embeds = dict(zip(texts, self.owl.encode_text(texts), strict=True))
        return {
            index: torch.stack([self._query_embedding(labels[o], embeds) for o in node.outputs])
            for index, node in enumerate(tree.nodes)
            if node.op == DETECT
        }

    def _query_embedding(self, label: Label, text_embeds: dict[str, torch.Tensor]) -> torch.Tensor:
        if not label.is_image_query:
            return text_embeds[label.text]
        try:
            query = self.queries.get(label.query_name)
        except KeyError as error:
            raise ValueError(str(error.args[0])) from None
        return query.embedding.to(self.owl.device)

    def _classify_texts(self, tree: Tree):
        nodes = [(i, n) for i, n in enumerate(tree.nodes) if n.op == CLASSIFY]
        if not nodes:
            return {}, None
        if self.clip is None:
            raise ValueError("the prompt has classify groups (...) but no CLIP model is loaded")
        groups = [[tree.labels[o].text for o in n.outputs] for _, n in nodes]
        texts, neutral = self.clip.group_texts(groups)
        return {i: t for (i, _), t in zip(nodes, texts, strict=True)}, neutral
