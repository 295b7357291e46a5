"""Spark throughput against the embedded path, on the same folder of real-size JPEGs, in one run.

Measures images/s for:

  (a) the embedded path: ``Classifier.classify(folder)`` in this process (the CLI's path);
  (b) Spark ``local[2]`` (by default) running the Spark NLP-style pipeline
      ``ImageAssembler → EfficientNetForImageClassification`` over
        - ``binaryFile`` input (encoded bytes to Python, decoded by sparkvision),
        - Spark's ``image`` source (the JVM decodes; raw BGR pixels travel to Python),

and prints each rate with its ratio to (a). Spark's session start-up, the first small job (Python
workers starting, the model reaching them) and one warm-up pass per reader (the JVM compiling its hot
paths) are timed and printed separately, not counted in the rates; every timed Spark run forces the
whole pipeline with the ``noop`` sink. Rates are medians over ``--repeats``.

    python benchmarks/spark_throughput.py                       # 500 JPEGs, long side 300–2000 px
    python benchmarks/spark_throughput.py --count 1000 --master local[2] --batch-size 16 --repeats 2
    python benchmarks/spark_throughput.py --max-side 640          # ImageNet-like sizes

Spark's image source decodes in the JVM (ImageIO, then a per-pixel copy into BGR bytes), which alone
caps it at about 20–25 images/s on 2 cores for photos with a 300–2000 px long side; raw pixels then
travel to Python, which resizes from full resolution (no JPEG draft decoding). binaryFile keeps all of
that in sparkvision's decoder.

Targets (issue 3): binaryFile ≥ 0.9 × embedded, image source ≥ 0.6 × embedded.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import make_jpeg_folder

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


def embedded(folder: Path, model: str, batch_size: int, repeats: int) -> list[float]:
    from sparkvision import Classifier

    classifier = Classifier.pretrained(model)
    files = sorted(folder.glob("*.jpg"))
    list(classifier.classify(files[:8], batch_size=8))  # warm-up: the ONNX session
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        count = sum(1 for p in classifier.classify(folder, batch_size=batch_size) if p.ok)
        rates.append(count / (time.perf_counter() - started))
    return rates


def spark_runs(
    folder: Path,
    model: str,
    master: str,
    batch_sizes: list[int],
    repeats: int,
    readers: list[str],
    conf: dict[str, str],
) -> dict[str, list[float]]:
    from pyspark.ml import Pipeline

    import sparkvision
    from sparkvision.annotator import EfficientNetForImageClassification
    from sparkvision.base import ImageAssembler, read_images

    started = time.perf_counter()
    spark = sparkvision.start(
        master, **{"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false", **conf}
    )
    spark.sparkContext.setLogLevel("ERROR")
    print(f"spark session start: {time.perf_counter() - started:.1f} s ({master})")
    count = len(list(folder.glob("*.jpg")))
    stage = EfficientNetForImageClassification.pretrained(model).setInputCols(["image_assembler"])

    def binary_df():
        return read_images(spark, str(folder), glob="*.jpg")

    def image_df():
        return spark.read.format("image").option("dropInvalid", True).load(str(folder))

    def run(frame, input_col: str, batch_size: int) -> float:
        pipeline = Pipeline().setStages(
            [ImageAssembler().setInputCol(input_col), stage.copy().setBatchSize(batch_size)]
        )
        begun = time.perf_counter()
        pipeline.fit(frame).transform(frame).write.format("noop").mode("overwrite").save()
        return time.perf_counter() - begun

    warm = time.perf_counter()  # several partitions, so that every task slot starts its Python worker
    run(read_images(spark, [str(p) for p in sorted(folder.glob("*.jpg"))[:16]]).repartition(8), "content", 2)
    print(f"first job (Python workers start, model shipped and loaded): {time.perf_counter() - warm:.1f} s")
    sources = [
        (label, make, column)
        for label, make, column in (("binaryFile", binary_df, "content"), ("image source", image_df, "image"))
        if label.split()[0].lower() in readers
    ]
    for label, make, column in sources:
        # The JVM compiles its hot paths during the first full pass: untimed.
        print(f"warm-up pass, {label}: {count / run(make(), column, batch_sizes[0]):.1f} img/s")
    print(
        "partitions: " + ", ".join(f"{label} {make().rdd.getNumPartitions()}" for label, make, _ in sources)
    )

    rates: dict[str, list[float]] = {}
    for batch_size in batch_sizes:
        for label, make, column in sources:
            key = f"spark {label}, batchSize {batch_size}"
            rates[key] = [count / run(make(), column, batch_size) for _ in range(repeats)]
    spark.stop()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=500, help="JPEGs in the folder (made once)")
    parser.add_argument("--min-side", type=int, default=300, help="shortest long side of the made JPEGs")
    parser.add_argument("--max-side", type=int, default=2000, help="longest long side of the made JPEGs")
    parser.add_argument("--folder", type=Path, default=None, help="use this folder of *.jpg instead")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument(
        "--batch-size", type=int, default=16, help="embedded batch size, and Spark's batchSize"
    )
    parser.add_argument("--spark-nlp-default", action="store_true", help="also run Spark with batchSize 2")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--readers",
        default="binaryfile,image",
        help="comma-separated: binaryfile, image (Spark's image source)",
    )
    parser.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="a Spark setting (repeatable)"
    )
    args = parser.parse_args()
    conf = dict(item.split("=", 1) for item in args.conf)

    folder = args.folder or make_jpeg_folder(args.count, min_side=args.min_side, max_side=args.max_side)
    count = len(list(folder.glob("*.jpg")))
    print(f"{count} JPEGs in {folder}")
    base = statistics.median(embedded(folder, args.model, args.batch_size, args.repeats))
    batch_sizes = [args.batch_size] + ([2] if args.spark_nlp_default and args.batch_size != 2 else [])
    readers = [r.strip().lower() for r in args.readers.split(",")]
    results = spark_runs(folder, args.model, args.master, batch_sizes, args.repeats, readers, conf)

    print()
    print(f"{'path':<36} {'img/s':>8} {'vs embedded':>12}")
    print(f"{'embedded (one process), batch ' + str(args.batch_size):<36} {base:8.1f} {1.0:12.2f}")
    for key, rates in results.items():
        rate = statistics.median(rates)
        print(f"{key:<36} {rate:8.1f} {rate / base:12.2f}")


if __name__ == "__main__":
    main()
