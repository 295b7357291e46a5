"""Helpers of the cluster tests: the cluster script as a module, photos, driver programs in a subprocess."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "images"
APP = Path(__file__).with_name("cluster_app.py")


def _load_cluster_script():
    spec = importlib.util.spec_from_file_location(
        "sparkvision_test_cluster", ROOT / "scripts" / "test_cluster.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


cluster_script = _load_cluster_script()


def photo_variants(folder: Path, count: int, *, prefix: str, seed: int) -> list[Path]:
    """``count`` distinct JPEGs (long side 224–448 px) cropped, scaled and mirrored from the examples."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    photos = [
        Image.open(p).convert("RGB") for p in sorted(EXAMPLES.glob("*")) if p.suffix in {".jpg", ".png"}
    ]
    paths = []
    for i in range(count):
        photo = photos[i % len(photos)]
        w, h = photo.size
        crop = rng.uniform(0.6, 1.0)
        cw, ch = int(w * crop), int(h * crop)
        left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
        image = photo.crop((left, top, left + cw, top + ch))
        scale = rng.randint(224, 448) / max(cw, ch)
        image = image.resize((max(1, int(cw * scale)), max(1, int(ch * scale))), Image.Resampling.BICUBIC)
        if rng.random() < 0.5:
            image = ImageOps.mirror(image)
        path = folder / f"{prefix}_{i:03d}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


def write_mixed_images(folder: Path) -> dict[str, Path]:
    """Real photos in several formats (RGBA and gray PNG among them) and one corrupt JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "a_chelsea.jpg": shutil.copy(EXAMPLES / "chelsea.jpg", folder / "a_chelsea.jpg"),
        "b_rocket.jpg": shutil.copy(EXAMPLES / "rocket.jpg", folder / "b_rocket.jpg"),
        "c_camera.png": shutil.copy(EXAMPLES / "camera.png", folder / "c_camera.png"),  # gray
        "d_coffee.jpg": shutil.copy(EXAMPLES / "coffee.jpg", folder / "d_coffee.jpg"),
    }
    rgba = Image.open(EXAMPLES / "astronaut.jpg").convert("RGBA").resize((192, 160))
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    rgba.save(folder / "e_astronaut_rgba.png")
    files["e_astronaut_rgba.png"] = folder / "e_astronaut_rgba.png"
    corrupt = folder / "f_corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + random.Random(7).randbytes(3000))
    files["f_corrupt.jpg"] = corrupt
    return {name: Path(p) for name, p in files.items()}


class AppRun:
    """One driver program (cluster_app.py) in its own process group, its ``@`` lines handed to a callback."""

    def __init__(
        self, mode: str, config: dict[str, Any], workdir: Path, env: dict[str, str] | None = None
    ) -> None:
        self.mode = mode
        self.env = env or {}
        self.config_path = workdir / f"{mode}.config.json"
        self.config_path.write_text(json.dumps(config))
        self.report_path = Path(config["report"])
        self.stderr_path = workdir / f"{mode}.stderr.txt"
        self.signals: list[str] = []

    def run(self, on_signal: Callable[[AppRun, str], None] | None = None, timeout: float = 420) -> int:
        env = {k: v for k, v in os.environ.items() if k not in ("PYSPARK_PYTHON", "SPARK_LOCAL_IP")}
        env.update(self.env)
        with open(self.stderr_path, "w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, str(APP), self.mode, str(self.config_path)],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=env,
                start_new_session=True,
            )
            timer = threading.Timer(timeout, self.kill)
            timer.start()
            try:
                assert self.process.stdout is not None
                for line in self.process.stdout:
                    if line.startswith("@"):
                        self.signals.append(line[1:].strip())
                        if on_signal is not None:
                            on_signal(self, line[1:].strip())
                return self.process.wait()
            finally:
                timer.cancel()

    def kill(self) -> None:
        """SIGKILL the driver and its JVM (the whole process group), as a crash would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def stderr_tail(self, chars: int = 6000) -> str:
        return self.stderr_path.read_text(errors="replace")[-chars:]

    def report(self) -> dict[str, Any]:
        return json.loads(self.report_path.read_text())
