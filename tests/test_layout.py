"""The package is the reference stack: each module imports only its own layer or the layers below,
there is no import cycle, PyTorch is imported only by the benchmark, and no answer key is installed.

The layers are those of ``ddpm_ref/__init__.py``'s docstring and the README's layout. Every import
is counted, also those inside functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ddpm_ref"

# Layer of each module, by the longest matching dotted prefix (relative to ddpm_ref).
LAYERS = {
    "": 0, "_checks": 0, "_rng": 0,                                   # helpers every layer may use
    "schedules": 1, "diffusion": 1, "likelihood": 1, "elbo": 1, "embeddings": 1, "_math_checks": 1,  # math
    "prediction": 1, "timesteps": 1, "learned_variance": 1, "score": 1,
    "nn": 2,                                                          # layers
    "models": 3,                                                      # model
    "data": 4, "optim": 4, "train": 4, "sample": 4, "checkpoint": 4, "runs": 4,    # loop
    "guidance": 4, "inpaint": 4, "interrupts": 4, "runlock": 4, "run_checks": 4, "memory": 4, "preflight": 4,
    "train_extra": 4, "latent": 4, "prompts": 4,
    "evaluation": 5, "plots": 5, "bench": 5,                          # tooling beside the stack
    "cli": 6, "commands": 6, "__main__": 6,                           # command line
}
LAYER_NAMES = {0: "helpers", 1: "math", 2: "layers", 3: "model", 4: "loop", 5: "tooling", 6: "commands"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _layer(name: str) -> int:
    parts = name.split(".") if name else []
    for n in range(len(parts), -1, -1):
        key = ".".join(parts[:n])
        if key in LAYERS:
            return LAYERS[key]
    raise KeyError(name)


def _imports(path: Path) -> set[str]:
    """Every ddpm_ref module (relative name) and every top-level external package ``path`` imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def _internal(path: Path) -> set[str]:
    """The ddpm_ref modules ``path`` imports (names that are not modules are mapped to their module)."""
    out = set()
    for name in _imports(path):
        if name == "ddpm_ref" or name.startswith("ddpm_ref."):
            rel = name[len("ddpm_ref."):] if name != "ddpm_ref" else ""
            while rel and rel not in MODULES:
                rel = rel.rpartition(".")[0]
            out.add(rel)
    return out


def test_every_module_has_a_layer():
    unknown = [m for m in MODULES if not any(m == k or m.startswith(k + ".") for k in LAYERS if k)
               and m not in LAYERS]
    assert not unknown, f"place these modules in a layer (tests/test_layout.py, README's layout): {unknown}"


@pytest.mark.parametrize("module", sorted(MODULES), ids=lambda m: m or "ddpm_ref")
def test_imports_only_its_layer_or_below(module):
    mine = _layer(module)
    upward = sorted(f"{dep} ({LAYER_NAMES[_layer(dep)]})" for dep in _internal(MODULES[module])
                    if dep != module and _layer(dep) > mine)
    assert not upward, f"ddpm_ref.{module} ({LAYER_NAMES[mine]}) imports upward: {upward}"


def test_no_import_cycles():
    graph = {m: {d for d in _internal(p) if d != m and d in MODULES and not m.startswith(d + ".")
                 and d != ""} for m, p in MODULES.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_commands_do_not_import_each_other():
    for m, p in MODULES.items():
        if m.startswith("commands."):
            others = {d for d in _internal(p) if d.startswith("commands.") and d != m}
            assert not others, f"ddpm_ref.{m} imports another command: {others}"


def test_only_the_benchmark_imports_torch():
    users = sorted(m for m, p in MODULES.items()
                   if any(n == "torch" or n.startswith("torch.") for n in _imports(p)))
    assert users and all(m.startswith("bench.") for m in users), users


def test_the_model_does_not_know_about_devices():
    for m, p in MODULES.items():
        if _layer(m) <= 3:
            bad = {n for n in _imports(p) if n.split(".")[0] in ("cupy", "kernels")}
            assert not bad, f"ddpm_ref.{m} imports {bad}; the model reaches a device only through its ops object"


def test_no_answer_key_in_the_installed_package():
    names = [p.name for p in PACKAGE.rglob("*.py")]
    assert not [n for n in names if "answer" in n or "solution" in n], names
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("ddpm_ref.lesson_tools")
