"""TreePredictor: runs a prompt Tree over an image level by level (OWL detect, CLIP classify).

Scoring: ``independent`` (default) judges every (patch, label) pair on its own, so one patch
can be both "a wing" and "an eye"; ``exclusive`` keeps only each patch's best label of its
group, as NanoOWL and transformers' post-processing do (which loses small parts to large
siblings, nanoowl #22).

Classify groups: with two or more labels the scores are the softmax of CLIP's scaled cosines
among the sibling labels (they sum to 1). A single-label group would always score 1.0 that
way, so it is scored against a fixed neutral prompt instead: score = sigmoid(logit_scale *
(cos(region, label) - cos(region, NEUTRAL_PROMPT))), the two-way softmax of label vs "a photo
of something". 0.5 means the label describes the region no better than a generic caption.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from .backends import make_image_encoder
from .backends.triton_backend import TritonOptions, TritonTarget
from .image_ops import batched_nms, crop_regions, image_size, load_image
from .models import LabelTooLongError
from .models.clip import ClipModel
from .models.owl import OwlModel, decode_boxes, decode_logits
from .prompt import PromptError, Tree, parse_prompt
from .queries import QueryStore, ReferenceQuery, check_query_name, select_query_patch
from .results import Classification, Detection, LabelScore, TreeResult

log = logging.getLogger("ros2_owl.predictor")
NEUTRAL_PROMPT = "a photo of something"
SCORING_MODES = ("independent", "exclusive")


@dataclass(frozen=True)
class PredictorConfig:
    """Per-frame settings (validated on construction)."""

    threshold: float = 0.1
    scoring: str = "independent"
    nms_iou: float | None = 0.5  # None = NMS off
    max_detections: int = 100
    max_regions: int = 8  # regions per level that nested groups run on

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold!r}")
        if self.scoring not in SCORING_MODES:
            raise ValueError(f"scoring must be one of {SCORING_MODES}, got {self.scoring!r}")
        if self.nms_iou is not None and not 0.0 <= float(self.nms_iou) <= 1.0:
            raise ValueError(f"nms_iou must be in [0, 1] or None, got {self.nms_iou!r}")
        if int(self.max_detections) < 1 or int(self.max_regions) < 0:
            raise ValueError("max_detections must be >= 1 and max_regions >= 0")


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
        if label_index in self.explicit:
            return self.thresholds[label_index]
        return float(config.threshold)


@dataclass
class _Region:
    id: int
    label_index: int
    box: tuple[float, float, float, float]
    score: float = 1.0
    record: dict | None = None  # the detection record for non-root regions


def _jobs(tree: Tree, level: list[_Region], op: str) -> list[tuple[_Region, int]]:
    """(region, node index) pairs of one op that run on this level's regions."""
    return [
        (r, i)
        for r in level
        for i, n in enumerate(tree.nodes)
        if n.input == r.label_index and n.op == op
    ]


class TreePredictor:
    """OWL-ViT/OWLv2 + CLIP over a tree prompt; thread-safe prepare(), stateless predict()."""

    def __init__(
        self,
        owl: OwlModel,
        clip: ClipModel | None,
        owl_encoder,
        clip_encoder,
        config: PredictorConfig | None = None,
        device: str = "cpu",
    ):
        self.owl, self.clip = owl, clip
        self.owl_encoder, self.clip_encoder = owl_encoder, clip_encoder
        self.config = config or PredictorConfig()
        self.device = torch.device(device)
        self.queries = QueryStore()
        self.random_weights = owl.info.random_weights or bool(clip and clip.info.random_weights)

    @classmethod
    def from_pretrained(
        cls,
        model: str = "google/owlvit-base-patch32",
        clip_model: str | None = "openai/clip-vit-base-patch32",
        device: str = "cpu",
        dtype: str = "auto",
        backend: str = "torch",
        config: PredictorConfig | None = None,
        cache_dir: str | None = None,
        triton: TritonOptions | None = None,
    ) -> TreePredictor:
        """Load models (ModelLoadError naming what was tried) and build the image encoders
        (``triton``: the server of backend 'triton'; its defaults when None)."""
        config = config or PredictorConfig()
        owl = OwlModel.load(model, device=device, cache_dir=cache_dir)
        batch = max(1, config.max_regions)
        kwargs = dict(device=device, dtype=dtype, cache_dir=cache_dir, max_batch=batch)
        remote = (triton or TritonOptions()) if backend == "triton" else None
        owl_encoder = make_image_encoder(
            backend,
            owl.encoder,
            model_id=model,
            triton=remote and TritonTarget.of(remote, remote.owl_model, owl.preprocessor),
            **kwargs,
        )
        clip = clip_encoder = None
        if clip_model:
            clip = ClipModel.load(clip_model, device=device, cache_dir=cache_dir)
            clip_encoder = make_image_encoder(
                backend,
                clip.encoder,
                model_id=clip_model,
                triton=remote
                and TritonTarget.of(remote, remote.clip_model, clip.preprocess_region),
                **kwargs,
            )
        return cls(owl, clip, owl_encoder, clip_encoder, config, device)

    # ------------------------------------------------------------------ prompt state

    def prepare(
        self,
        prompt: str | Tree,
        *,
        threshold: float | None = None,
        label_thresholds: Mapping[str, float] | None = None,
    ) -> PromptState:
        """Parse + encode a prompt; only labels never seen before run a text encoder."""
        tree = parse_prompt(prompt) if isinstance(prompt, str) else prompt
        if not isinstance(tree, Tree):
            raise TypeError(f"prompt must be a str or Tree, got {type(prompt).__name__}")
        text = prompt if isinstance(prompt, str) else tree.to_prompt()
        classify_outputs = set(tree.classify_labels())
        for node in tree.nodes:
            if node.input in classify_outputs:  # parses (as in NanoOWL) but has no region to run on
                raise PromptError(
                    f"group at column {node.column} is nested under classify label "
                    f"'{tree.labels[node.input].text}': a classify label has no region of its own; "
                    "attach the group to a detect label instead, e.g. '[a room [a lamp] "
                    "(indoors, outdoors)]'",
                    node.column,
                )
        default = self.config.threshold if threshold is None else threshold
        if isinstance(default, bool) or not 0.0 <= float(default) <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {default!r}")
        overrides = dict(label_thresholds or {})
        thresholds = tree.detect_thresholds(default, overrides)  # validates the values
        explicit = frozenset(
            i
            for i in thresholds
            if threshold is not None
            or tree.labels[i].threshold is not None
            or tree.labels[i].text in overrides
        )
        labels = tree.labels
        try:
            texts = [labels[i].text for i in tree.detect_labels() if not labels[i].is_image_query]
            embeds = dict(zip(texts, self.owl.encode_text(texts), strict=True))
            detect_queries = {}
            for index, node in enumerate(tree.nodes):
                if node.op == "detect":
                    rows = [self._query_embedding(labels[o], embeds) for o in node.outputs]
                    detect_queries[index] = torch.stack(rows)
            classify_texts, neutral = self._classify_texts(tree)
        except LabelTooLongError as error:
            column = next((lb.column for lb in labels if lb.text == error.label), 0)
            raise PromptError(str(error), column) from error
        return PromptState(
            tree, text, thresholds, explicit, detect_queries, classify_texts, neutral
        )

    def _query_embedding(self, label, text_embeds: dict[str, torch.Tensor]) -> torch.Tensor:
        if not label.is_image_query:
            return text_embeds[label.text]
        try:
            query = self.queries.get(label.query_name)
        except KeyError as error:
            raise ValueError(str(error.args[0])) from None
        return query.embedding.to(self.owl.device)

    def _classify_texts(self, tree: Tree):
        nodes = [(i, n) for i, n in enumerate(tree.nodes) if n.op == "classify"]
        if not nodes:
            return {}, None
        if self.clip is None:
            raise ValueError("the prompt has classify groups (...) but no CLIP model is loaded")
        texts = [tree.labels[o].text for _, n in nodes for o in n.outputs]
        if any(len(n.outputs) == 1 for _, n in nodes):
            texts.append(NEUTRAL_PROMPT)
        embeds = dict(zip(texts, self.clip.encode_text(texts), strict=True))
        out = {i: torch.stack([embeds[tree.labels[o].text] for o in n.outputs]) for i, n in nodes}
        neutral = embeds[NEUTRAL_PROMPT][None] if NEUTRAL_PROMPT in embeds else None
        return out, neutral

    # ------------------------------------------------------------------ queries

    def register_query(self, name: str, image, box=None) -> ReferenceQuery:
        """Embed a reference region (box in pixels, None = whole image) and store it as $name."""
        check_query_name(name)
        img = load_image(image, self.device)
        width, height = image_size(img)
        outputs = self._encode(self.owl_encoder, self.owl.preprocessor(img)[None])
        norm = None
        if box is not None:
            x0, y0, x1, y1 = (float(v) for v in box)
            if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
                raise ValueError(f"query box {tuple(box)} is not inside the {width}x{height} image")
            sx, sy = self.owl.preprocessor.box_scale(width, height)
            norm = torch.tensor([x0 / sx, y0 / sy, x1 / sx, y1 / sy])
        patch = select_query_patch(outputs, norm)
        query = ReferenceQuery(
            name=name,
            embedding=outputs["class_embeds"][0, patch].float().cpu(),
            model_id=self.owl.info.model_id,
            model_kind=self.owl.info.kind,
            image_size=(width, height),
            box=None if box is None else tuple(float(v) for v in box),
            patch_index=patch,
        )
        self.queries.add(query)
        return query

    def save_queries(self, path) -> None:
        self.queries.save(path)

    def load_queries(self, path) -> tuple[str, ...]:
        return self.queries.load(
            path, embedding_dim=self.owl.info.embed_dim, model_id=self.owl.info.model_id
        )

    # ------------------------------------------------------------------ inference

    @staticmethod
    def _encode(encoder, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run an encoder in chunks of its max_batch (if it has one)."""
        step = int(getattr(encoder, "max_batch", 0) or pixels.shape[0] or 1)
        parts = [encoder(pixels[i : i + step]) for i in range(0, pixels.shape[0], step)]
        if len(parts) == 1:
            return parts[0]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def predict(
        self, image, state: PromptState, config: PredictorConfig | None = None
    ) -> TreeResult:
        """Run the whole tree on one image, one batched encoder call per level and model."""
        cfg = config or self.config
        timings = dict.fromkeys(("preprocess", "encode_image", "decode", "nms", "classify"), 0.0)
        start = time.perf_counter()
        img = load_image(image, self.device)
        width, height = image_size(img)
        tree = state.tree
        root = _Region(0, 0, (0.0, 0.0, float(width), float(height)))
        records: list[dict] = []
        image_cls: list[Classification] = []
        level, dropped = [root], 0
        while level:
            found = self._detect_level(img, level, state, cfg, len(records), timings)
            for rec in found:
                rec["id"] = len(records) + 1
                records.append(rec)
            self._classify_level(img, level, state, image_cls, timings)
            nested = [r for r in found if tree.nodes_for_input(r["label_index"])]
            nested.sort(key=lambda r: -r["score"])
            dropped += max(0, len(nested) - cfg.max_regions)
            level = [
                _Region(r["id"], r["label_index"], r["box"], r["score"], r)
                for r in nested[: cfg.max_regions]
            ]
        detections = tuple(
            Detection(
                id=r["id"],
                parent_id=r["parent_id"],
                label_index=r["label_index"],
                label=tree.labels[r["label_index"]].text,
                score=r["score"],
                box=r["box"],
                classifications=tuple(r["classifications"]),
            )
            for r in records
        )
        timings["total"] = (time.perf_counter() - start) * 1e3
        return TreeResult(
            tree, state.prompt, (width, height), detections, tuple(image_cls), dropped, timings
        )

    def _detect_level(self, img, level, state, cfg, already, timings) -> list[dict]:
        """Detect inside every region of a level with one encoder call; returns new records."""
        tree = state.tree
        jobs = _jobs(tree, level, "detect")
        if not jobs or already >= cfg.max_detections:  # frame budget spent: skip the encoder
            return []
        regions = list(dict.fromkeys(r.id for r, _ in jobs))
        by_id = {r.id: r for r, _ in jobs}
        t = time.perf_counter()
        width, height = image_size(img)
        if regions == [0]:
            pixels = self.owl.preprocessor(img)[None]
            frames = [(0, 0, width, height)]
        else:
            pixels, frames = crop_regions(
                img, [by_id[i].box for i in regions], self.owl.preprocessor
            )
        timings["preprocess"] += (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        outputs = self._encode(self.owl_encoder, pixels)
        timings["encode_image"] += (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        boxes_norm = decode_boxes(outputs)
        cand = {"score": [], "label": [], "box": [], "parent": []}
        for region, node_index in jobs:
            row = regions.index(region.id)
            x0, y0, x1, y1 = frames[row]
            sx, sy = self.owl.preprocessor.box_scale(x1 - x0, y1 - y0)
            scale = torch.tensor([sx, sy, sx, sy], device=boxes_norm.device)
            offset = torch.tensor([x0, y0, x0, y0], device=boxes_norm.device, dtype=torch.float32)
            boxes = boxes_norm[row] * scale + offset
            # boxes stay inside their region: the image for the root, the parent's crop below
            limit = torch.tensor([x1, y1, x1, y1], device=boxes.device, dtype=boxes.dtype)
            boxes = torch.minimum(torch.maximum(boxes, offset[:2].repeat(2)), limit)
            one = {k: v[row : row + 1] for k, v in outputs.items()}
            scores = torch.sigmoid(decode_logits(one, state.detect_queries[node_index])[0])
            labels = torch.tensor(tree.nodes[node_index].outputs, device=scores.device)
            limits = [state.threshold(i, cfg) for i in tree.nodes[node_index].outputs]
            keep = scores > torch.tensor(limits, device=scores.device)
            if cfg.scoring == "exclusive":  # each patch keeps only its best label
                best = torch.zeros_like(keep).scatter_(1, scores.argmax(dim=1, keepdim=True), True)
                keep &= best
            patch, k = keep.nonzero(as_tuple=True)
            cand["score"].append(scores[patch, k])
            cand["label"].append(labels[k])
            cand["box"].append(boxes[patch])
            cand["parent"].append(torch.full_like(k, region.id))
        score = torch.cat(cand["score"])
        label, box, parent = (torch.cat(cand[k]) for k in ("label", "box", "parent"))
        timings["decode"] += (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        if cfg.nms_iou is not None and score.numel():
            group = parent * len(tree.labels) + label
            order = batched_nms(box, score, group, float(cfg.nms_iou))
        else:
            order = torch.argsort(score, descending=True, stable=True)
        order = order[: max(0, cfg.max_detections - already)]
        # group by parent region (level order), best first within each parent
        rank = {rid: i for i, rid in enumerate(regions)}
        rows = sorted(order.tolist(), key=lambda j: rank[int(parent[j])])
        timings["nms"] += (time.perf_counter() - t) * 1e3
        score_l, label_l, box_l, parent_l = (x.tolist() for x in (score, label, box, parent))
        return [
            {
                "parent_id": parent_l[j],
                "label_index": label_l[j],
                "score": score_l[j],
                "box": tuple(box_l[j]),
                "classifications": [],
            }
            for j in rows
        ]

    def _classify_level(self, img, level, state, image_cls, timings) -> None:
        """Classify every region of a level that has classify groups, one CLIP call."""
        tree = state.tree
        jobs = _jobs(tree, level, "classify")
        if not jobs:
            return
        t = time.perf_counter()
        regions = list({r.id: r for r, _ in jobs}.values())
        if [r.id for r in regions] == [0]:
            pixels = self.clip.preprocess_image(img)[None]
        else:
            pixels, _ = crop_regions(img, [r.box for r in regions], self.clip.preprocess_region)
        embeds = self._encode(self.clip_encoder, pixels)["image_embeds"]
        rows = {r.id: i for i, r in enumerate(regions)}
        for region, node_index in jobs:
            emb = embeds[rows[region.id] : rows[region.id] + 1]
            logits = self.clip.logits(emb, state.classify_texts[node_index])[0]
            if logits.numel() == 1:
                neutral = self.clip.logits(emb, state.neutral_text)[0]
                probs = torch.sigmoid(logits - neutral)
            else:
                probs = torch.softmax(logits, dim=0)
            outputs = tree.nodes[node_index].outputs
            scores = tuple(
                LabelScore(o, tree.labels[o].text, float(p))
                for o, p in zip(outputs, probs.tolist(), strict=True)
            )
            result = Classification(node_index, region.id, scores)
            if region.record is None:
                image_cls.append(result)
            else:
                region.record["classifications"].append(result)
        timings["classify"] += (time.perf_counter() - t) * 1e3


__all__ = [
    "NEUTRAL_PROMPT",
    "PredictorConfig",
    "PromptState",
    "TreePredictor",
    "Classification",
    "Detection",
    "LabelScore",
    "TreeResult",
]
