"""The packages of backend/ depend one way: model <- frame <- live, and training and the benchmarks
on top; errors.py and timing.py are shared by all. Imports inside functions count too."""
import ast
from pathlib import Path

BACKEND = Path(__file__).resolve().parent.parent / "backend"
MAY_IMPORT = {"model": set(), "frame": {"model"}, "live": {"frame", "model"}, "training": {"frame", "model"},
              "bench": {"frame", "live", "model", "training"}}


def backend_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n for n in names if n.startswith("backend.")}


def test_packages_import_one_way():
    wrong = []
    for package, allowed in MAY_IMPORT.items():
        for path in sorted((BACKEND / package).glob("*.py")):
            for name in backend_imports(path):
                other = name.split(".")[1]
                if (BACKEND / other).is_dir() and other != package and other not in allowed:
                    wrong.append(f"{path.relative_to(BACKEND.parent)} imports {name}")
    assert sorted(p.name for p in BACKEND.iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(MAY_IMPORT)
    assert wrong == []
