"""``POST /v1/caption``: captions for uploaded images, with a captioning model the server knows.

The same uploads as ``/v1/classify`` (multipart files or a raw image body); generation options as query
parameters (transformers ``generate()`` names; those not given keep the model's defaults). Every upload
gets one record ``{"path", "captions": [...best first], "error"}`` in upload order; uploads are decoded
in the decoder threads, and generation runs on the service's inference thread, so it takes turns with
classification batches instead of competing with them for the cores.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse

from ..errors import ConfigError, ImageDecodeError, SparkvisionError
from ..results import PreparedImage
from .errors import ApiError, decode_error_status
from .registry import ModelRegistry
from .settings import ServeSettings
from .uploads import read_uploads

__all__ = ["add_caption_route"]


def add_caption_route(
    app: FastAPI,
    registry: ModelRegistry,
    settings: ServeSettings,
    decoders: ThreadPoolExecutor,
    inference: ThreadPoolExecutor,
    dependencies: list[Any],
) -> None:
    """Install ``POST /v1/caption`` on ``app``."""

    @app.post("/v1/caption", tags=["caption"], summary="Caption images", dependencies=dependencies)
    async def caption(
        request: Request,
        model: Annotated[str | None, Query(description="a captioning model from /v1/models")] = None,
        max_length: Annotated[int | None, Query(description="longest caption in tokens")] = None,
        num_beams: Annotated[int | None, Query(description="beam search with this many beams")] = None,
        do_sample: Annotated[bool | None, Query(description="sample instead of searching")] = None,
        top_k: Annotated[int | None, Query(description="sampling: keep the k most likely tokens")] = None,
        top_p: Annotated[float | None, Query(description="sampling: nucleus mass")] = None,
        temperature: Annotated[float | None, Query(description="sampling: logits divided by this")] = None,
        seed: Annotated[int | None, Query(description="sampling: the same seed, the same captions")] = None,
        num_return_sequences: Annotated[int | None, Query(description="captions per image")] = None,
        repetition_penalty: Annotated[float | None, Query()] = None,
        no_repeat_ngram_size: Annotated[int | None, Query()] = None,
    ) -> JSONResponse:
        started = time.perf_counter()
        slot = registry.ready_slot(model)
        if slot.spec.task != "captioning":
            raise ApiError(
                422,
                "not_captioning",
                f"model {slot.name!r} is a {slot.spec.task} model, not a captioning one",
            )
        options = {
            key: value
            for key, value in {
                "max_length": max_length, "num_beams": num_beams, "do_sample": do_sample, "top_k": top_k,
                "top_p": top_p, "temperature": temperature, "seed": seed,
                "num_return_sequences": num_return_sequences, "repetition_penalty": repetition_penalty,
                "no_repeat_ngram_size": no_repeat_ngram_size,
            }.items()
            if value is not None
        }  # fmt: skip
        captioner = slot.classifier
        try:
            captioner.generation_config(**options)
        except ConfigError as exc:
            raise ApiError(422, "invalid_parameter", str(exc)) from None
        parsed = await read_uploads(request, settings)
        loop = asyncio.get_running_loop()
        decoded = await asyncio.gather(
            *(
                loop.run_in_executor(decoders, _prepare, captioner, u.data, settings.max_pixels)
                for u in parsed.uploads
            )
        )
        good = [item for item in decoded if isinstance(item, PreparedImage)]
        try:
            captions = await loop.run_in_executor(
                inference,
                lambda: list(captioner.caption_sources(good, batch_size=settings.max_batch, **options)),
            )
        except SparkvisionError as exc:
            raise ApiError(500, "inference_failed", f"captioning failed: {exc}") from None
        results = iter(captions)
        records = []
        for upload, item in zip(parsed.uploads, decoded):
            if isinstance(item, PreparedImage):
                record = next(results).to_dict()
                record["path"] = upload.name
            else:
                record = {"path": upload.name, "captions": [], "error": str(item)}
            records.append(record)
        if not good and decoded and isinstance(decoded[0], ImageDecodeError):
            status, code = decode_error_status(decoded[0])
            who = f"{parsed.uploads[0].name}: " if parsed.uploads[0].name else ""
            raise ApiError(status, code, f"{who}{decoded[0]}", results=records)
        return JSONResponse(
            {
                "model": slot.name,
                "task": "captioning",
                "elapsed_ms": round((time.perf_counter() - started) * 1000.0, 2),
                "results": records,
            }
        )


def _prepare(captioner: Any, data: bytes, max_pixels: int) -> PreparedImage | ImageDecodeError:
    try:
        return captioner.prepare(data, max_pixels=max_pixels)
    except ImageDecodeError as exc:
        return exc
