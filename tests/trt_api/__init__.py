"""TensorRT's real Python API surface, per version, without TensorRT's libraries or a GPU.

NVIDIA publishes the bindings alone on PyPI (``tensorrt-cu12-bindings``, about 1 MB). Their compiled module
links three libraries (libnvinfer, libnvonnxparser, libnvinfer_plugin) and needs nine C entry points from
them at load time; stubs that return null, built here with the system C compiler, let it import, and every
class, enum, property and method signature is then the real one of that version. :func:`surface` downloads,
builds, imports in a subprocess (versions cannot share a process) and caches the result as JSON;
:mod:`tests.trt_api.double` turns it into a recording stand-in for ``tensorrt``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

VERSIONS = ("10.3.0", "10.16.1.11", "11.4.0.106")
PACKAGE = "tensorrt-cu12-bindings"
CACHE = Path(os.environ.get("EDGECNN_TRT_WHEELS", Path.home() / ".cache" / "edgecnn-test" / "trt-wheels"))
LIBRARIES = {
    "libnvinfer": (
        "createInferBuilder_INTERNAL",
        "createInferRuntime_INTERNAL",
        "createInferRefitter_INTERNAL",
        "getPluginRegistry",
        "getBuilderPluginRegistry",
    ),
    "libnvonnxparser": ("createNvOnnxParser_INTERNAL", "createNvOnnxParserRefitter_INTERNAL", "getNvOnnxParserVersion"),
    "libnvinfer_plugin": ("initLibNvInferPlugins",),
}


class Unavailable(Exception):
    """The surface cannot be had here (no network for pip, no C compiler): the reason, for a skip."""


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, **kwargs)


def _wheel(version: str) -> Path:
    found = sorted(CACHE.glob(f"{PACKAGE.replace('-', '_')}-{version}-*.whl"))
    if found:
        return found[0]
    CACHE.mkdir(parents=True, exist_ok=True)
    done = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--quiet",
            "-d",
            str(CACHE),
            f"{PACKAGE}=={version}",
        ]
    )
    found = sorted(CACHE.glob(f"{PACKAGE.replace('-', '_')}-{version}-*.whl"))
    if done.returncode != 0 or not found:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise Unavailable(f"pip could not download {PACKAGE}=={version} ({last[:200]})")
    return found[0]


def _undefined(module: Path) -> set[str]:
    nm = shutil.which("nm")
    if nm is None:
        return set()
    listed = _run([nm, "-D", "--undefined-only", str(module)]).stdout.split("\n")
    return {line.split()[-1] for line in listed if line.split()[:1] == ["U"]}


def _stubs(root: Path, module: Path, major: str) -> Path:
    """libnvinfer.so.N, libnvonnxparser.so.N and libnvinfer_plugin.so.N, each entry point returning null/0."""
    stubs = root / "stubs"
    stubs.mkdir(exist_ok=True)
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise Unavailable("no C compiler (cc/gcc) to build the stub TensorRT libraries")
    needed = _undefined(module)
    known = {symbol for symbols in LIBRARIES.values() for symbol in symbols}
    missing = {
        s
        for s in needed
        if s.endswith(("_INTERNAL", "Registry", "Version", "Plugins")) and not s.startswith(("Py", "_Py"))
    } - known
    if missing:
        raise Unavailable(f"{module.name} needs entry points the stubs do not provide: {sorted(missing)}")
    for library, symbols in LIBRARIES.items():
        target = stubs / f"{library}.so.{major}"
        if target.is_file():
            continue
        source = stubs / f"{library}.c"
        source.write_text("".join(f"void *{symbol}(void) {{ return 0; }}\n" for symbol in symbols))
        built = _run([compiler, "-shared", "-fPIC", f"-Wl,-soname,{target.name}", "-o", str(target), str(source)])
        if built.returncode != 0:
            raise Unavailable(f"building {target.name} failed: {built.stderr.strip()[:200]}")
    return stubs


def surface(version: str) -> dict:
    """The API surface of ``tensorrt-cu12-bindings==version`` (cached as JSON beside its wheel)."""
    root = CACHE / version
    cached = root / "surface.json"
    extractor = Path(__file__).with_name("extract.py")
    if cached.is_file() and cached.stat().st_mtime >= extractor.stat().st_mtime:
        return json.loads(cached.read_text())
    wheel = _wheel(version)
    if not (root / "tensorrt_bindings").is_dir():
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(root)
    module = next((root / "tensorrt_bindings").glob("tensorrt*.so"))
    stubs = _stubs(root, module, version.split(".")[0])
    env = {**os.environ, "LD_LIBRARY_PATH": str(stubs), "PYTHONPATH": str(root)}
    done = _run([sys.executable, str(extractor)], env=env)
    if done.returncode != 0:
        raise Unavailable(f"importing {PACKAGE} {version} over the stubs failed: {done.stderr.strip()[-300:]}")
    data = json.loads(done.stdout)
    cached.write_text(json.dumps(data))
    return data
