"""The package boundaries the architecture promises (docs/architecture.md).

* Only :mod:`stream.kafka` imports aiokafka: every Kafka client is built there; and it
  imports nothing of :mod:`stream.worker`, which drives it.
* The domain core (pipeline, features, inference, audio, wire, events, verdicts)
  loads neither aiokafka nor faust nor asyncio: it is plain synchronous code that
  training, the CLI and the benchmarks import without the runtime.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import stream

ROOT = Path(stream.__file__).parent

DOMAIN_CORE = [
    "stream.pipeline",
    "stream.features",
    "stream.inference",
    "stream.audio",
    "stream.wire",
    "stream.events",
    "stream.events.kinds",
    "stream.events.verdict",
    "stream.inference.evaluation",
    "stream.errors",
    "stream.types",
    "stream.roles",
]
RUNTIME_ONLY = ("aiokafka", "faust", "mode", "asyncio")


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_only_the_kafka_package_imports_aiokafka() -> None:
    kafka = ROOT / "kafka"
    importers = sorted(
        str(path.relative_to(ROOT.parent))
        for path in ROOT.rglob("*.py")
        if kafka not in path.parents and "aiokafka" in _imported_roots(path)
    )
    assert importers == []


def _imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


def test_the_kafka_package_imports_nothing_of_the_worker() -> None:
    """The Kafka side drives the worker through a protocol (``ConsumerRuntime``);
    it never reaches into the worker's modules."""
    importers = sorted(
        f"{path.relative_to(ROOT.parent)}: {module}"
        for path in (ROOT / "kafka").rglob("*.py")
        for module in _imported_modules(path)
        if module == "stream.worker" or module.startswith("stream.worker.")
    )
    assert importers == []


def test_the_scan_sees_the_worker_import_the_kafka_package() -> None:
    """The scan above can fail: it finds the imports that do exist."""
    assert "stream.kafka.consumer" in _imported_modules(ROOT / "worker" / "app.py")


def test_the_scan_sees_the_kafka_package_import_aiokafka() -> None:
    """The scan above can fail: it finds the imports that do exist."""
    assert "aiokafka" in _imported_roots(ROOT / "kafka" / "readers.py")


def test_the_domain_core_loads_no_kafka_faust_or_asyncio() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {module}\n" for module in DOMAIN_CORE)
        + f"loaded = {{m.split('.')[0] for m in sys.modules}} & {set(RUNTIME_ONLY)!r}\n"
        + "print(','.join(sorted(loaded)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_package_public_names_resolve_to_their_homes() -> None:
    """Every name a package's ``__all__`` lists (loaded on first use) exists where
    ``_HOMES`` says, and importing one submodule loads none of the others."""
    import importlib

    for package in (
        "stream.control",
        "stream.dashboard",
        "stream.kafka",
        "stream.produce",
        "stream.worker",
    ):
        module = importlib.import_module(package)
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{package}.{name}"


def test_the_json_guard_loads_no_model_runtime() -> None:
    code = (
        "import sys, stream.control.json_records, stream.kafka.config\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'onnxruntime', 'aiokafka'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_package_lists_its_public_names() -> None:
    packages = sorted(path.parent for path in ROOT.rglob("__init__.py"))
    missing = [
        str(package.relative_to(ROOT.parent))
        for package in packages
        if "__all__" not in _assigned_names(package / "__init__.py")
    ]
    assert missing == []


def _assigned_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
