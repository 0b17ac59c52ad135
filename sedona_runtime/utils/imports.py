"""User code named by import path (`my_pkg.nets:build`, or `path/to/nets.py:build`), importable in any process."""
from __future__ import annotations

import importlib
import os
import re
import sys
import sysconfig
import traceback
from pathlib import Path
from typing import Any, Callable

from sedona_runtime.utils.errors import SedonaError

# MODULE:ATTRIBUTE with a dotted module name, or FILE.py:ATTRIBUTE; the attribute may be dotted (Class.method).
_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_ATTR = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def is_import_path(text: object) -> bool:
    """True for 'module.path:callable' or 'file.py:callable' (a built-in name such as 'resnet50' is not)."""
    if not isinstance(text, str) or text.count(":") != 1:
        return False
    module, attr = text.split(":")
    return bool(_ATTR.match(attr)) and (bool(_MODULE.match(module)) or module.endswith(".py"))


def _split(spec: str, what: str) -> tuple[str, str, Path | None]:
    """(module name, attribute, file path or None) of `spec`."""
    if not is_import_path(spec):
        raise SedonaError(f"{what} {spec!r}: expected MODULE:CALLABLE (e.g. my_pkg.nets:build) or FILE.py:CALLABLE")
    module, attr = spec.split(":")
    if module.endswith(".py"):
        path = Path(module).expanduser()
        if not path.is_file():
            raise SedonaError(f"{what} {spec!r}: no such file {path}")
        stem = path.stem
        if not _MODULE.match(stem):
            raise SedonaError(f"{what} {spec!r}: the file name {path.name} is not a valid module name")
        return stem, attr, path.resolve()
    return module, attr, None


def _prepend(entry: str) -> None:
    if entry not in sys.path:
        sys.path.insert(0, entry)


def _not_found(exc: ModuleNotFoundError, module: str) -> bool:
    """True when `module` itself (or a package above it) is missing, not something it imports."""
    name = exc.name or ""
    return module == name or module.startswith(name + ".")


def _import_module(module: str, root: str | None, file: Path | None, spec: str, what: str) -> Any:
    if file is not None:
        _prepend(str(file.parent))
    elif root:
        _prepend(root)
    for attempt in range(2):
        try:
            return importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if not _not_found(exc, module):
                raise SedonaError(f"{what} {spec!r}: importing {module} failed: {_short(exc)}") from None
            cwd = os.getcwd()
            if attempt == 0 and cwd not in sys.path and "" not in sys.path:
                _prepend(cwd)  # `torchrun script.py` puts the script's folder on the path, not the current one
                importlib.invalidate_caches()
                continue
            raise SedonaError(f"{what} {spec!r}: no module named {exc.name!r} (looked in {cwd} and the Python "
                              "path; run from the folder that holds it or add it to PYTHONPATH)") from None
        except SedonaError:
            raise
        except Exception as exc:  # the user's module raised while importing: one line that says where
            raise SedonaError(f"{what} {spec!r}: importing {module} failed: {_short(exc)}") from None
    raise AssertionError("unreachable")  # pragma: no cover


def load_callable(spec: str, root: str | None = None, *, what: str = "import path") -> Callable[..., Any]:
    """The callable `spec` names, importing its module first (SedonaError with one clear line otherwise).

    `root` is a directory put at the front of `sys.path` first (see `import_root`); a module that is not
    found is also looked for in the current directory.
    """
    module, attr, file = _split(spec, what)
    obj: Any = _import_module(module, root, file, spec, what)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise SedonaError(f"{what} {spec!r}: module {module} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise SedonaError(f"{what} {spec!r}: {attr} is a {type(obj).__name__}, not a callable")
    return obj


def absolute_spec(spec: str) -> str:
    """`spec` with a FILE.py module made absolute (`nets.py:build` -> `/abs/dir/nets.py:build`), so that
    a later command (resume, evaluate, export, a block process) run from another directory finds the same
    file; MODULE:CALLABLE and anything else is returned unchanged (`import_root` covers those)."""
    if not is_import_path(spec):
        return spec
    module, attr = spec.split(":")
    if not module.endswith(".py"):
        return spec
    return f"{os.path.abspath(os.path.expanduser(module))}:{attr}"


def resolve_paths(model_cfg: Any = None, data_cfg: Any = None) -> None:
    """Import the user network and data set function a config names by import path now (a bad path is one
    clear line before anything runs), record the sys.path entry other processes need (`import_root`), and
    make a FILE.py:CALLABLE's file and the data directory absolute, in place: what a run records means the
    same from any directory (a resume, evaluate or export run elsewhere, a block process on another machine).
    Idempotent."""
    for cfg, field, what in ((model_cfg, "arch", "model"), (data_cfg, "dataset", "data set")):
        spec = getattr(cfg, field, None) if cfg is not None else None
        if spec is not None and is_import_path(spec):
            load_callable(spec, cfg.import_root, what=what)
            cfg.import_root = import_root(spec, what=what) or cfg.import_root
            setattr(cfg, field, absolute_spec(spec))
    if getattr(data_cfg, "data_dir", None):
        data_cfg.data_dir = os.path.abspath(os.path.expanduser(data_cfg.data_dir))


def _installed_dirs() -> set[str]:
    paths = sysconfig.get_paths()
    return {str(Path(paths[k]).resolve()) for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}


def import_root(spec: str, *, what: str = "import path") -> str | None:
    """The directory a fresh process must have on `sys.path` to import `spec` (None when it is installed).

    `spec`'s module must already be imported (load_callable did it). A block process or a later
    `evaluate`/`export` started from another directory puts this entry on its path first.
    """
    module, _, file = _split(spec, what)
    if file is not None:
        return str(file.parent)
    top = sys.modules.get(module.split(".")[0])
    if top is None:
        return None
    location = getattr(top, "__file__", None)
    if location:
        location_path = Path(location).resolve()
        root = location_path.parent.parent if location_path.name == "__init__.py" else location_path.parent
    else:  # a namespace package: no __init__.py
        paths = list(getattr(top, "__path__", []))
        if not paths:
            return None
        root = Path(paths[0]).resolve().parent
    installed = _installed_dirs()
    if any(str(root) == d or str(root).startswith(d + os.sep) for d in installed):
        return None
    return str(root)


def call_user(fn: Callable[..., Any], spec: str, what: str, **kwargs: Any) -> Any:
    """`fn(**kwargs)`; an exception from the user's code becomes one line naming where it was raised."""
    try:
        return fn(**kwargs)
    except SedonaError:
        raise
    except Exception as exc:
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
        raise SedonaError(f"{what} {spec!r}: calling it({args}) raised {_short(exc)}{where}") from None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
