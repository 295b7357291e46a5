"""``ImageAssembler``: Spark images or raw file bytes → image annotations (Spark NLP's first stage).

It accepts either kind of image column and never runs Python (pure Spark SQL expressions):

* Spark's image struct, from ``spark.read.format("image").load(...)`` (the JVM decodes the files;
  pixels travel as raw BGR/BGRA/gray). Spark keeps *truncated* JPEGs with the missing part filled in
  grey and ignores EXIF orientation.
* a ``binary`` column of encoded files, from ``spark.read.format("binaryFile").load(...)`` (column
  ``content``; the origin comes from its ``path`` column). The files are decoded in Python by the same
  code as the CLI: EXIF orientation, every Pillow format, colour modes handled exactly, and truncated
  or corrupt files reported as errors. Prefer this reader; it is also faster (compressed bytes travel
  to Python instead of raw pixels).

Example::

    df = spark.read.format("binaryFile").load("photos/")
    assembled = ImageAssembler().setInputCol("content").setOutputCol("image_assembler").transform(df)
"""

from __future__ import annotations

from typing import ClassVar

from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..errors import ConfigError
from .annotations import ENCODED_FILE, IMAGE, is_image_struct

__all__ = ["ImageAssembler"]

_HOW_TO_READ = (
    'read images with spark.read.format("image").load(PATH) (column "image") or '
    'spark.read.format("binaryFile").load(PATH) (column "content")'
)


class ImageAssembler(Transformer, DefaultParamsReadable, DefaultParamsWritable):
    """Turns an image column into an image annotation column that the classifiers read.

    Params: ``inputCol`` (default ``"image"``), ``outputCol`` (default ``"image_assembler"``),
    ``textCol`` (optional string column copied into each annotation's ``text``, e.g. a prompt) and
    ``originCol`` (string column giving the origin of ``binaryFile`` rows, default ``"path"``).

    An image struct whose ``data`` holds the encoded file rather than raw pixels (as
    :meth:`loadImagesAsBytes` gives it: its length is not height × width × channels) is marked as an
    encoded file, so the classifiers decode it from the bytes.
    """

    #: Spark NLP's class attributes.
    name: ClassVar[str] = "ImageAssembler"
    outputAnnotatorType: ClassVar[str] = IMAGE

    inputCol: Param[str] = Param(
        Params._dummy(),
        "inputCol",
        "image column: Spark's image struct or binary file content",
        typeConverter=TypeConverters.toString,
    )
    outputCol: Param[str] = Param(
        Params._dummy(), "outputCol", "output annotation column", typeConverter=TypeConverters.toString
    )
    textCol: Param[str] = Param(
        Params._dummy(),
        "textCol",
        "optional string column copied into the annotations' text field",
        typeConverter=TypeConverters.toString,
    )
    originCol: Param[str] = Param(
        Params._dummy(),
        "originCol",
        "string column naming each binary image's origin (used when present)",
        typeConverter=TypeConverters.toString,
    )

    @keyword_only
    def __init__(
        self,
        *,
        inputCol: str = "image",
        outputCol: str = "image_assembler",
        textCol: str | None = None,
        originCol: str = "path",
    ) -> None:
        super().__init__()
        self._setDefault(inputCol="image", outputCol="image_assembler", originCol="path")
        kwargs = {k: v for k, v in self._input_kwargs.items() if v is not None}
        self._set(**kwargs)

    @keyword_only
    def setParams(
        self,
        *,
        inputCol: str | None = None,
        outputCol: str | None = None,
        textCol: str | None = None,
        originCol: str | None = None,
    ) -> ImageAssembler:
        """Set several params at once (keywords only), as Spark NLP's ``setParams``."""
        return self._set(**{k: v for k, v in self._input_kwargs.items() if v is not None})

    @classmethod
    def loadImagesAsBytes(cls, spark: SparkSession, path: str) -> DataFrame:
        """Spark NLP's reader: ``spark.read.format("image")`` rows whose ``image.data`` is replaced by
        the encoded file (JPEG, PNG, GIF, BMP). This stage takes such rows as encoded files; reading
        ``spark.read.format("binaryFile")`` directly does the same with one read instead of two."""
        images = spark.read.format("image").option("dropInvalid", True).load(path)
        files = (
            spark.read.format("binaryFile")
            .option("pathGlobFilter", "*.{jpeg,jpg,png,gif,bmp,JPEG,JPG,PNG,GIF,BMP}")
            .load(path)
            # binaryFile writes file:/x where the image source writes file:///x
            .select(
                F.regexp_replace("path", "^([A-Za-z][A-Za-z0-9+.-]*):/(?!/)", "$1:///").alias("path"),
                "content",
            )
        )
        joined = images.join(files, images["image.origin"] == files["path"], "inner")
        return joined.withColumn("image", joined["image"].withField("data", joined["content"])).drop(
            "path", "content"
        )

    # -- params -----------------------------------------------------------------------------------
    def setInputCol(self, value: str) -> ImageAssembler:
        """Sets the image column (Spark image struct or binary content)."""
        return self._set(inputCol=value)

    def getInputCol(self) -> str:
        return self.getOrDefault(self.inputCol)

    def setOutputCol(self, value: str) -> ImageAssembler:
        """Sets the name of the image annotation column to create."""
        return self._set(outputCol=value)

    def getOutputCol(self) -> str:
        return self.getOrDefault(self.outputCol)

    def setTextCol(self, value: str) -> ImageAssembler:
        """Sets a string column whose value goes into each annotation's ``text``."""
        return self._set(textCol=value)

    def getTextCol(self) -> str | None:
        """The text column, or ``None`` when unset."""
        return self.getOrDefault(self.textCol) if self.isDefined(self.textCol) else None

    def setOriginCol(self, value: str) -> ImageAssembler:
        """Sets the column naming the origin of binary images (``binaryFile``'s ``path``)."""
        return self._set(originCol=value)

    def getOriginCol(self) -> str:
        return self.getOrDefault(self.originCol)

    # -- transform --------------------------------------------------------------------------------
    def _transform(self, dataset: DataFrame) -> DataFrame:
        input_col, output_col = self.getInputCol(), self.getOutputCol()
        fields = {f.name: f for f in dataset.schema.fields}
        if input_col not in fields:
            raise ConfigError(
                f"ImageAssembler: column {input_col!r} not found (columns: {', '.join(fields) or 'none'}); "
                f"{_HOW_TO_READ}, and setInputCol() to that column"
            )
        if output_col in fields:
            raise ConfigError(
                f"ImageAssembler: output column {output_col!r} already exists; choose another with "
                "setOutputCol() or drop that column first"
            )
        text = self._text_column(fields)
        data_type = fields[input_col].dataType
        if is_image_struct(data_type):
            annotation = _from_image_struct(F.col(input_col), text)
        elif isinstance(data_type, T.BinaryType):
            origin_col = self.getOriginCol()
            origin = (
                F.col(origin_col).cast("string")
                if origin_col in fields and isinstance(fields[origin_col].dataType, T.StringType)
                else F.lit(None).cast("string")
            )
            annotation = _from_encoded_bytes(F.col(input_col), origin, text)
        else:
            raise ConfigError(
                f"ImageAssembler: column {input_col!r} is {data_type.simpleString()}, not an image: it must "
                f"be Spark's image struct or binary file content; {_HOW_TO_READ}"
            )
        return dataset.withColumn(output_col, annotation.alias(output_col, metadata={"annotatorType": IMAGE}))

    def _text_column(self, fields: dict[str, T.StructField]) -> Column:
        text_col = self.getTextCol()
        if text_col is None:
            return F.lit("")
        if text_col not in fields:
            raise ConfigError(f"ImageAssembler: text column {text_col!r} not found")
        return F.coalesce(F.col(text_col).cast("string"), F.lit(""))


def _empty_metadata() -> Column:
    return F.create_map().cast("map<string,string>")


def _from_image_struct(image: Column, text: Column) -> Column:
    """One annotation per row; a null image keeps its row with null pixels (an error downstream).

    Raw pixels are exactly height × width × channels bytes; anything else is an encoded file
    (:meth:`ImageAssembler.loadImagesAsBytes`), marked so the classifiers decode it.
    """
    raw_size = image["height"] * image["width"] * image["nChannels"]
    # Rows Spark could not decode (size -1, no data) stay raw, so the classifier says what happened.
    valid = (image["height"] > 0) & (image["width"] > 0) & (F.length(image["data"]) > 0)
    encoded = F.coalesce(valid & (F.length(image["data"]) != raw_size), F.lit(False))
    metadata = F.when(encoded, F.create_map(F.lit("encoding"), F.lit(ENCODED_FILE))).otherwise(
        _empty_metadata()
    )
    return F.array(
        F.struct(
            F.lit(IMAGE).alias("annotatorType"),
            F.coalesce(image["origin"], F.lit("")).alias("origin"),
            F.coalesce(image["height"], F.lit(-1)).alias("height"),
            F.coalesce(image["width"], F.lit(-1)).alias("width"),
            F.coalesce(image["nChannels"], F.lit(-1)).alias("nChannels"),
            F.coalesce(image["mode"], F.lit(-1)).alias("mode"),
            image["data"].alias("result"),
            metadata.alias("metadata"),
            text.alias("text"),
        )
    )


def _from_encoded_bytes(content: Column, origin: Column, text: Column) -> Column:
    """Encoded file bytes travel as they are; the size and mode are known once decoded."""
    unknown = F.lit(-1)
    return F.array(
        F.struct(
            F.lit(IMAGE).alias("annotatorType"),
            F.coalesce(origin, F.lit("")).alias("origin"),
            unknown.alias("height"),
            unknown.alias("width"),
            unknown.alias("nChannels"),
            unknown.alias("mode"),
            content.alias("result"),
            F.create_map(F.lit("encoding"), F.lit(ENCODED_FILE)).alias("metadata"),
            text.alias("text"),
        )
    )
