"""TreePredictor: runs a prompt Tree over an image level by level (OWL detect, CLIP classify).

The predictor only orchestrates: which regions a level runs on, one encoder call per level and
model, thresholds from the prompt state, NMS and the frame's detection budget. The models own
their maths (OwlModel.decode gives candidates in input pixels, ClipModel.classify gives label
probabilities); every record on the way is typed and each Detection is built once.

Scoring: ``independent`` (default) judges every (patch, label) pair on its own, so one patch
can be both "a wing" and "an eye"; ``exclusive`` keeps only each patch's best label of its
group, as NanoOWL and transformers' post-processing do (which loses small parts to large
siblings, nanoowl #22).

Classify input: every region, the whole frame included, is padded to a square and resized
(ClipModel.pixels), never centre-cropped. Degenerate boxes (clipped under 0.01 px wide or high)
are dropped by OwlModel.decode at every level before they count for anything.

Prompt preparation (text and reference-query embeddings, thresholds) is core/prompt_state.py;
the encoders a predictor starts with and the background upgrade that replaces them (as one
EncoderSet, between frames) are core/encoder_upgrade.py and backends/upgrade.py.

About 420 lines: TreePredictor is one object whose loading, reference queries, (batched)
prediction and encoder-set swap share its encoders and models; the maths lives in models/.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace

import torch

from ..backends import ImageEncoderBackend
from ..backends.triton_backend import TritonOptions, TritonTarget
from ..backends.upgrade import release_heap
from ..models.clip import NEUTRAL_PROMPT, ClipModel
from ..models.owl import Candidates, DetectJob, OwlModel
from .encoder_upgrade import EncoderSet, EncoderStarter
from .levels import (
    Region,
    Timings,
    crop_boxes,
    distinct_regions,
    encode_chunks,
    level_jobs,
    root_region,
    select_candidates,
)
from .preprocess import image_size, load_image
from .prompt import CLASSIFY, DETECT, Tree
from .prompt_state import PromptEncoder, PromptState
from .queries import QueryStore, ReferenceQuery, check_query_name
from .region_resolution import RegionEncoders
from .results import Classification, Detection, LabelScore, TreeResult
from .settings import DEFAULT_CLIP, DEFAULT_MODEL, PredictorConfig


class TreePredictor:
    """OWL-ViT/OWLv2 + CLIP over a tree prompt; thread-safe prepare(), stateless predict()."""

    def __init__(
        self,
        owl: OwlModel,
        clip: ClipModel | None,
        owl_encoder: ImageEncoderBackend,
        clip_encoder: ImageEncoderBackend | None,
        config: PredictorConfig | None = None,
        device: str = "cpu",
        cache_dir: str | None = None,
    ):
        self.owl, self.clip = owl, clip
        self.device, self.cache_dir = torch.device(device), cache_dir
        self._encoders = self._encoder_set(owl_encoder, clip_encoder)
        self.upgrade = None  # a BackgroundUpgrade while backend auto measures (encoder_upgrade)
        self._trim_pending = False
        self.config = config or PredictorConfig()
        self.adaptive_seen = self.config.region_resolution == "adaptive"
        self.queries = QueryStore()
        self.random_weights = owl.info.random_weights or bool(clip and clip.info.random_weights)

    def _encoder_set(self, owl, clip) -> EncoderSet:
        regions = RegionEncoders(self.owl, lambda: owl, self.device, self.cache_dir)
        return EncoderSet(owl, clip, regions)

    @property
    def encoders(self) -> EncoderSet:
        """The encoder set in force; a frame reads it once and keeps it to its end."""
        return self._encoders

    @property
    def owl_encoder(self) -> ImageEncoderBackend:
        return self._encoders.owl

    @owl_encoder.setter
    def owl_encoder(self, encoder: ImageEncoderBackend) -> None:
        self._encoders = self._encoder_set(encoder, self._encoders.clip)

    @property
    def clip_encoder(self) -> ImageEncoderBackend | None:
        return self._encoders.clip

    @clip_encoder.setter
    def clip_encoder(self, encoder: ImageEncoderBackend | None) -> None:
        self._encoders = replace(self._encoders, clip=encoder)

    @property
    def region_encoders(self) -> RegionEncoders:
        return self._encoders.regions

    def _frame_encoders(self) -> EncoderSet:
        """The set this frame keeps to its end; the first frame after a swap (when the frames
        before it are done) gives the freed torch weights back to the system."""
        enc = self._encoders
        if self._trim_pending:
            self._trim_pending = False
            release_heap()
        return enc

    def adopt_encoders(self, encoders: Mapping[str, ImageEncoderBackend], free=()) -> None:
        """Swap new image encoders ('owl', 'clip') in as one set, effective from the next frame;
        `free` names the models whose torch image encoder nothing uses any more."""
        old = self._encoders
        owl, clip = encoders.get("owl", old.owl), encoders.get("clip", old.clip)
        self._encoders = self._encoder_set(owl, clip)
        for name in free:
            model = self.owl if name == "owl" else self.clip
            if model is not None:
                model.free_image_encoder()
        self._trim_pending = bool(free)

    @classmethod
    def from_pretrained(
        cls,
        model: str = DEFAULT_MODEL,
        clip_model: str | None = DEFAULT_CLIP,
        device: str = "cpu",
        dtype: str = "auto",
        backend: str = "auto",
        config: PredictorConfig | None = None,
        cache_dir: str | None = None,
        precision: str = "fp32",
        triton: TritonOptions | None = None,
        upgrade: str = "wait",
    ) -> TreePredictor:
        """Load models (ModelLoadError naming what was tried) and build the image encoders.

        backend 'auto' picks the fastest local backend for the machine (see backends/auto.py);
        precision 'allow-reduced' lets it pick bf16/int8 on CPU. backend 'triton' (never chosen
        by auto) sends the image encoders to the server ``triton`` names (its defaults if None).
        upgrade 'background': with auto on a CPU and no cached decision, serve with torch and
        leave ``predictor.upgrade`` (not started) to measure and swap (encoder_upgrade.py).
        """
        config = config or PredictorConfig()
        owl = OwlModel.load(model, device=device, cache_dir=cache_dir)
        batch = max(1, config.max_regions)
        kwargs = dict(
            device=device, dtype=dtype, cache_dir=cache_dir, max_batch=batch, precision=precision
        )
        remote = (triton or TritonOptions()) if backend == "triton" else None
        starter = EncoderStarter(backend, upgrade, kwargs)
        owl_encoder = starter.encoder(
            "owl",
            owl.encoder,
            model,
            triton=remote and TritonTarget.of(remote, remote.owl_model, owl.preprocessor),
        )
        clip = clip_encoder = None
        if clip_model:
            clip = ClipModel.load(clip_model, device=device, cache_dir=cache_dir)
            clip_encoder = starter.encoder(
                "clip",
                clip.encoder,
                clip_model,
                triton=remote
                and TritonTarget.of(remote, remote.clip_model, clip.preprocess_region),
            )
        predictor = cls(owl, clip, owl_encoder, clip_encoder, config, device, cache_dir)
        predictor.upgrade = starter.background(predictor)
        return predictor

    def backend_summary(self) -> str:
        """Which backend and dtype runs each image encoder and why (logs, diagnostics)."""
        parts = []
        for name, encoder in (("owl", self.owl_encoder), ("clip", self.clip_encoder)):
            choice = getattr(encoder, "selection", None)
            if encoder is not None:
                parts.append(f"{name}: {choice.describe() if choice else encoder.name}")
        return "; ".join(parts)

    # ------------------------------------------------------------------ prompt state

    def prepare(
        self,
        prompt: str | Tree,
        *,
        threshold: float | None = None,
        label_thresholds: Mapping[str, float] | None = None,
    ) -> PromptState:
        """Parse + encode a prompt; only labels never seen before run a text encoder."""
        encoder = PromptEncoder(self.owl, self.clip, self.queries, self.config.threshold)
        return encoder.encode(prompt, threshold, label_thresholds)

    # ------------------------------------------------------------------ queries

    def register_query(self, name: str, image, box=None) -> ReferenceQuery:
        """Embed a reference region (box in pixels, None = whole image) and store it as $name."""
        check_query_name(name)
        img = load_image(image, self.device)
        width, height = image_size(img)
        if box is not None:
            x0, y0, x1, y1 = (float(v) for v in box)
            if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
                raise ValueError(
                    f"query box {tuple(box)} is not inside the {width}x{height} image "
                    "with a positive width and height (x0 < x1, y0 < y1)"
                )
        pixels, frames = self.owl.pixels(img, None)
        outputs = encode_chunks(self._frame_encoders().owl, pixels)
        patch = self.owl.reference_patch(outputs, box, frames[0])
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

    def config_problem(self, config: PredictorConfig) -> str | None:
        """Why these settings cannot run on this predictor's encoders (None when they can)."""
        return self._encoders.regions.problem(config.region_resolution)

    def _runnable(self, config: PredictorConfig) -> PredictorConfig:
        problem = self.config_problem(config)
        if problem:
            raise ValueError(problem)
        self.adaptive_seen = self.adaptive_seen or config.region_resolution == "adaptive"
        return config

    def predict(
        self, image, state: PromptState, config: PredictorConfig | None = None
    ) -> TreeResult:
        """Run the whole tree on one image, one batched encoder call per level and model."""
        cfg = self._runnable(config or self.config)
        enc = self._frame_encoders()
        return self._run(load_image(image, self.device), state, cfg, Timings(), None, enc)

    def predict_batch(
        self, images, states, config: PredictorConfig | None = None
    ) -> list[TreeResult]:
        """Several frames (one per camera, each with its own prompt state): their whole-image
        OWL passes share encoder calls (chunks of the encoder's max_batch); the rest runs per
        frame, so each result equals predict()'s. Each frame's preprocess/encode_image timing
        is its share of the batched call."""
        cfg = self._runnable(config or self.config)
        if len(images) != len(states):
            raise ValueError(f"{len(images)} images but {len(states)} prompt states")
        timings = [Timings() for _ in images]
        enc = self._frame_encoders()
        imgs = [load_image(image, self.device) for image in images]
        batched = [
            i for i, st in enumerate(states) if level_jobs(st.tree, [root_region(imgs[i])], DETECT)
        ]
        roots: dict[int, dict[str, torch.Tensor]] = {}
        if batched:
            start = time.perf_counter()
            pixels = torch.cat([self.owl.pixels(imgs[i], None)[0] for i in batched])
            mid = time.perf_counter()
            outputs = encode_chunks(enc.owl, pixels)
            end = time.perf_counter()
            for row, i in enumerate(batched):
                roots[i] = {k: v[row : row + 1] for k, v in outputs.items()}
                timings[i].ms["preprocess"] += (mid - start) * 1e3 / len(batched)
                timings[i].ms["encode_image"] += (end - mid) * 1e3 / len(batched)
        return [
            self._run(img, st, cfg, t, roots.get(i), enc)
            for i, (img, st, t) in enumerate(zip(imgs, states, timings, strict=True))
        ]

    def _run(self, img, state: PromptState, cfg, timings, root_outputs, enc) -> TreeResult:
        """The level loop of one frame (root_outputs: its whole-image encoding, if done) on one
        encoder set from start to end."""
        width, height = image_size(img)
        level = [root_region(img)]
        found: list[Region] = []
        classified: dict[int, list[Classification]] = {}  # region id -> its classifications
        dropped = 0
        while level:
            new = self._detect_level(img, level, state, cfg, len(found), timings, root_outputs, enc)
            root_outputs = None
            classified.update(self._classify_level(img, level, state, timings, enc))
            found += new
            nested = sorted(
                (r for r in new if state.tree.nodes_for_input(r.label_index)),
                key=lambda r: -r.score,
            )
            dropped += max(0, len(nested) - cfg.max_regions)
            level = nested[: cfg.max_regions]
        detections = tuple(
            Detection(
                id=r.id,
                parent_id=r.parent_id,
                label_index=r.label_index,
                label=state.tree.labels[r.label_index].text,
                score=r.score,
                box=r.box,
                classifications=tuple(classified.get(r.id, ())),
            )
            for r in found
        )
        return TreeResult(
            state.tree,
            state.prompt,
            (width, height),
            detections,
            tuple(classified.get(0, ())),
            dropped,
            timings.total(),
        )

    def _detect_level(
        self, img, level, state, cfg, already: int, timings, root_outputs, enc
    ) -> list[Region]:
        """Detect inside every region of a level, one encoder call per input size (the root
        level's outputs may come encoded already); returns the new regions."""
        tree = state.tree
        jobs = level_jobs(tree, level, DETECT)
        if not jobs or already >= cfg.max_detections:  # frame budget spent: skip the encoder
            return []
        regions = distinct_regions(jobs)
        rows = {r.id: i for i, r in enumerate(regions)}
        parts = []
        boxes = crop_boxes(regions)
        mode = "native" if boxes is None else cfg.region_resolution  # the image: native size
        for size, group in enc.regions.groups(img, regions, mode).items():
            group_rows = {r.id: i for i, r in enumerate(group)}
            if root_outputs is not None:  # the root level, encoded with other cameras' frames
                outputs, frames = root_outputs, [(0, 0, *image_size(img))]
            else:
                with timings.stage("preprocess"):
                    pixels, frames = self.owl.pixels(img, crop_boxes(group), size)
                with timings.stage("encode_image"):
                    outputs = encode_chunks(enc.regions.at(size), pixels)
            with timings.stage("decode"):
                detect_jobs = [
                    DetectJob(
                        row=group_rows[region.id],
                        region_id=region.id,
                        frame=frames[group_rows[region.id]],
                        queries=state.detect_queries[n],
                        labels=tree.nodes[n].outputs,
                        thresholds=tuple(state.threshold(o, cfg) for o in tree.nodes[n].outputs),
                    )
                    for region, n in jobs
                    if region.id in group_rows
                ]
                parts.append(self.owl.decode(outputs, detect_jobs, cfg.scoring == "exclusive"))
        candidates = Candidates.cat(parts)
        with timings.stage("nms"):
            kept = select_candidates(
                candidates, len(tree.labels), cfg, cfg.max_detections - already, rows
            )
        score, label, box, parent = (c.tolist() for c in candidates)
        return [
            Region(already + k + 1, parent[j], label[j], score[j], tuple(box[j]))
            for k, j in enumerate(kept)
        ]

    def _classify_level(self, img, level, state, timings, enc) -> dict[int, list[Classification]]:
        """Classify every region of a level that has classify groups, one CLIP call."""
        tree = state.tree
        jobs = level_jobs(tree, level, CLASSIFY)
        if not jobs:
            return {}
        with timings.stage("classify"):
            regions = distinct_regions(jobs)
            pixels = self.clip.pixels(img, crop_boxes(regions))
            embeds = encode_chunks(enc.clip, pixels)["image_embeds"]
            rows = {r.id: i for i, r in enumerate(regions)}
            out: dict[int, list[Classification]] = {}
            for region, n in jobs:
                row = rows[region.id]
                probs = self.clip.classify(
                    embeds[row : row + 1], state.classify_texts[n], state.neutral_text
                )
                outputs = tree.nodes[n].outputs
                scores = tuple(
                    LabelScore(o, tree.labels[o].text, float(p))
                    for o, p in zip(outputs, probs.tolist(), strict=True)
                )
                out.setdefault(region.id, []).append(Classification(n, region.id, scores))
        return out


__all__ = [
    "NEUTRAL_PROMPT",
    "PredictorConfig",
    "PromptState",
    "Region",
    "TreePredictor",
    "Classification",
    "Detection",
    "LabelScore",
    "TreeResult",
]
