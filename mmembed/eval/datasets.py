"""The registry of MMEB datasets: one typed entry per dataset, with meta-task and split.

MMEB (VLM2Vec, Jiang et al. 2024) has 36 image datasets in four meta-tasks, 20 of them
in-distribution (IND: their training splits are in MMEB-train) and 16 out-of-distribution
(OOD). MMEB-V2 adds video and visual-document tasks; they are registered here too, under
their own benchmark names, so the same harness evaluates them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Benchmark(str, Enum):
    """A group of datasets that is reported together."""

    MMEB = "mmeb"  # the 36 image datasets of MMEB (V1), scored with hit@1
    MMEB_V2_VIDEO = "mmeb-v2-video"  # MMEB-V2 video tasks, scored with hit@1
    MMEB_V2_VISDOC = "mmeb-v2-visdoc"  # MMEB-V2 visual-document tasks, scored with nDCG@5
    # V2's English-only ViDoRe-V2 sets: in its visdoc.yaml, not in its leaderboard's 24
    MMEB_V2_VISDOC_ENGLISH = "mmeb-v2-visdoc-english"


class MetaTask(str, Enum):
    """The column a dataset is averaged into, as in the papers' tables."""

    CLASSIFICATION = "Classification"
    VQA = "VQA"
    RETRIEVAL = "Retrieval"
    GROUNDING = "Grounding"
    VIDEO_CLASSIFICATION = "Video-CLS"
    VIDEO_QA = "Video-QA"
    VIDEO_RETRIEVAL = "Video-RET"
    VIDEO_MOMENT_RETRIEVAL = "Video-MRET"
    VIDORE_V1 = "ViDoRe-V1"
    VIDORE_V2 = "ViDoRe-V2"
    VISRAG = "VisRAG"
    VISDOC_OOD = "VisDoc-OOD"


class Split(str, Enum):
    """Whether a dataset's training split was seen by MMEB-trained models."""

    IND = "IND"
    OOD = "OOD"


@dataclass(frozen=True)
class DatasetSpec:
    """One registered dataset."""

    name: str  # folder name in the release, e.g. "ImageNet-1K"
    benchmark: Benchmark  # which report it belongs to
    meta_task: MetaTask  # the table column it is averaged into
    split: Split | None  # IND/OOD for MMEB; None where the benchmark makes no such split
    num_candidates: int | None  # candidates per query in the release; None when it varies
    metrics: tuple[str, ...] = ("hit@1",)  # metrics computed; the first is the headline score
    corpus_ranked: bool = False  # ranked against every candidate of the dataset (V2 "global")

    @property
    def metric(self) -> str:
        """The headline metric, stored next to every score."""
        return self.metrics[0]


DATASETS: dict[str, DatasetSpec] = {}

_VISDOC_METRICS = ("ndcg@5", "ndcg@10", "recall@1", "recall@5", "recall@10", "mrr@10", "hit@1")


V2_GLOBAL_VIDEO = frozenset(
    ["HMDB51", "UCF101", "K700", "Breakfast", "MSR-VTT", "MSVD", "DiDeMo", "YouCook2", "VATEX"]
)
"""The video datasets VLM2Vec-V2 ranks against the whole corpus (``eval_type: global`` in
``experiments/public/eval/video.yaml`` on ``main``); every visual-document dataset is ranked so
too (``visdoc.yaml``), every image dataset per row (``image.yaml``)."""


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add a dataset to the registry; a name can be registered once."""
    if spec.name in DATASETS:
        raise ValueError(f"dataset {spec.name!r} is already registered")
    DATASETS[spec.name] = spec
    return spec


def _register_mmeb() -> None:
    ind, ood = Split.IND, Split.OOD
    labels = {
        "ImageNet-1K": 1000,
        "N24News": 24,
        "HatefulMemes": 2,
        "VOC2007": 20,
        "SUN397": 397,
        "Place365": 365,
        "ImageNet-A": 1000,
        "ImageNet-R": 200,
        "ObjectNet": 313,
        "Country211": 211,
    }
    for name, size in labels.items():
        split = (
            ind if name in ("ImageNet-1K", "N24News", "HatefulMemes", "VOC2007", "SUN397") else ood
        )
        register(DatasetSpec(name, Benchmark.MMEB, MetaTask.CLASSIFICATION, split, size))
    groups = [
        (
            MetaTask.VQA,
            ind,
            ["OK-VQA", "A-OKVQA", "DocVQA", "InfographicsVQA", "ChartQA", "Visual7W"],
        ),
        (MetaTask.VQA, ood, ["ScienceQA", "VizWiz", "GQA", "TextVQA"]),
        (
            MetaTask.RETRIEVAL,
            ind,
            ["VisDial", "CIRR", "VisualNews_t2i", "VisualNews_i2t", "MSCOCO_t2i", "MSCOCO_i2t"]
            + ["NIGHTS", "WebQA"],
        ),
        (MetaTask.RETRIEVAL, ood, ["FashionIQ", "Wiki-SS-NQ", "OVEN", "EDIS"]),
        (MetaTask.GROUNDING, ind, ["MSCOCO"]),
        (MetaTask.GROUNDING, ood, ["RefCOCO", "RefCOCO-Matching", "Visual7W-Pointing"]),
    ]
    for meta_task, split, names in groups:
        for name in names:
            register(DatasetSpec(name, Benchmark.MMEB, meta_task, split, 1000))


def _register_mmeb_v2() -> None:
    video = [
        (MetaTask.VIDEO_CLASSIFICATION, ["SmthSmthV2", "HMDB51", "UCF101", "K700", "Breakfast"]),
        (MetaTask.VIDEO_QA, ["Video-MME", "NExTQA", "EgoSchema", "MVBench", "ActivityNetQA"]),
        (MetaTask.VIDEO_RETRIEVAL, ["MSR-VTT", "MSVD", "DiDeMo", "YouCook2", "VATEX"]),
        (MetaTask.VIDEO_MOMENT_RETRIEVAL, ["QVHighlight", "Charades-STA", "MomentSeeker"]),
    ]
    for meta_task, names in video:
        for name in names:
            corpus = name in V2_GLOBAL_VIDEO
            spec = DatasetSpec(
                name, Benchmark.MMEB_V2_VIDEO, meta_task, None, None, corpus_ranked=corpus
            )
            register(spec)
    synthetic = ["artificial_intelligence", "energy", "government_reports", "healthcare_industry"]
    visdoc = [
        (
            MetaTask.VIDORE_V1,
            Split.IND,
            ["ViDoRe_arxivqa", "ViDoRe_docvqa", "ViDoRe_infovqa", "ViDoRe_tabfquad"]
            + ["ViDoRe_tatdqa", "ViDoRe_shiftproject"]
            + [f"ViDoRe_syntheticDocQA_{topic}" for topic in synthetic],
        ),
        (
            MetaTask.VIDORE_V2,
            Split.IND,
            ["ViDoRe_esg_reports_human_labeled_v2", "ViDoRe_biomedical_lectures_v2_multilingual"]
            + ["ViDoRe_economics_reports_v2_multilingual", "ViDoRe_esg_reports_v2_multilingual"],
        ),
        (
            MetaTask.VISRAG,
            Split.IND,
            ["VisRAG_ArxivQA", "VisRAG_ChartQA", "VisRAG_MP-DocVQA", "VisRAG_SlideVQA"]
            + ["VisRAG_InfoVQA", "VisRAG_PlotQA"],
        ),
        (
            MetaTask.VISDOC_OOD,
            Split.OOD,
            ["ViDoSeek-page", "ViDoSeek-doc", "MMLongBench-doc", "MMLongBench-page"],
        ),
    ]
    for meta_task, split, names in visdoc:
        for name in names:
            spec = DatasetSpec(
                name, Benchmark.MMEB_V2_VISDOC, meta_task, split, None, _VISDOC_METRICS, True
            )
            register(spec)


_register_mmeb()
_register_mmeb_v2()
for _name in ["biomedical_lectures_v2", "economics_reports_v2", "esg_reports_v2"]:
    # the queries in English only (``v2_data.VIDORE_LANGUAGE``); the _multilingual sets keep all
    register(
        DatasetSpec(
            f"ViDoRe_{_name}",
            Benchmark.MMEB_V2_VISDOC_ENGLISH,
            MetaTask.VIDORE_V2,
            Split.IND,
            None,
            _VISDOC_METRICS,
            True,
        )
    )


def get_dataset(name: str) -> DatasetSpec:
    """The registered dataset called ``name``.

    Raises:
        KeyError: the name is not registered; the message lists the known names.
    """
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(DATASETS)
        raise KeyError(f"unknown MMEB dataset {name!r}; registered: {known}") from None


def list_datasets(benchmark: Benchmark | str | None = Benchmark.MMEB) -> list[DatasetSpec]:
    """The registered datasets of one benchmark (all of them for None), in table order."""
    if benchmark is None:
        return list(DATASETS.values())
    benchmark = Benchmark(benchmark)
    return [spec for spec in DATASETS.values() if spec.benchmark is benchmark]


def resolve_datasets(selection: list[str] | None) -> list[DatasetSpec]:
    """Turn names and group names into dataset specs, in registry order, without repeats.

    Args:
        selection: dataset names, benchmark names ("mmeb", "mmeb-v2-video", "mmeb-v2-visdoc",
            "mmeb-v2-visdoc-english"), or "all"; None means the 36 MMEB datasets.
    """
    if not selection:
        return list_datasets(Benchmark.MMEB)
    chosen: set[str] = set()
    benchmarks = {b.value: b for b in Benchmark}
    for item in selection:
        if item == "all":
            chosen.update(DATASETS)
        elif item in benchmarks:
            chosen.update(spec.name for spec in list_datasets(benchmarks[item]))
        else:
            chosen.add(get_dataset(item).name)
    return [spec for name, spec in DATASETS.items() if name in chosen]
