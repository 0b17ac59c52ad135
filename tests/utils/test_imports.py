"""User code by import path: parsing, importing, one clear line for every failure, the sys.path entry recorded."""
from __future__ import annotations

import sys

import pytest

from sedona_runtime.utils.errors import SedonaError
from sedona_runtime.utils.imports import call_user, import_root, is_import_path, load_callable


@pytest.mark.parametrize("text,ok", [
    ("my_pkg.nets:build", True), ("torchvision.models:resnet18", True), ("nets.py:build", True),
    ("dir/nets.py:Net.build", True), ("resnet50", False), ("dgl:4", False), ("a:b:c", False), ("a:", False),
    (":b", False), ("my-pkg:build", False), (None, False),
])
def test_is_import_path(text, ok):
    assert is_import_path(text) is ok


def test_loads_a_callable_and_records_the_folder_it_came_from(user_pkg):
    fn = load_callable("byo_user_pkg.nets:build", what="model")
    assert callable(fn) and fn.__module__ == "byo_user_pkg.nets"
    assert import_root("byo_user_pkg.nets:build") == user_pkg
    # Installed code needs no entry: any Python process imports it.
    load_callable("torchvision.models:resnet18")
    assert import_root("torchvision.models:resnet18") is None


def test_a_file_path_works_too(tmp_path):
    (tmp_path / "byo_file_net.py").write_text("def build(num_classes):\n    return num_classes * 2\n")
    spec = f"{tmp_path}/byo_file_net.py:build"
    assert load_callable(spec)(num_classes=3) == 6
    assert import_root(spec) == str(tmp_path)


@pytest.mark.parametrize("spec,words", [
    ("nonexistent_pkg_xyz.nets:build", ["no module named 'nonexistent_pkg_xyz'", "PYTHONPATH"]),
    ("byo_user_pkg.nets:nothing", ["has no attribute 'nothing'"]),
    ("byo_user_pkg.nets:torch", ["is a module, not a callable"]),
    ("not a path", ["expected MODULE:CALLABLE"]),
    ("missing_file.py:build", ["no such file"]),
])
def test_failures_are_one_clear_line(user_pkg, spec, words):
    with pytest.raises(SedonaError) as err:
        load_callable(spec, what="model")
    message = str(err.value)
    assert "\n" not in message and spec in message
    for w in words:
        assert w in message, message


def test_a_module_that_raises_on_import_or_call_is_named(tmp_path):
    (tmp_path / "byo_broken_mod.py").write_text("import nonexistent_dependency_xyz\n")
    (tmp_path / "byo_raising_mod.py").write_text("def build(num_classes):\n    return 1 / 0\n")
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(SedonaError, match="importing byo_broken_mod failed: ModuleNotFoundError"):
            load_callable("byo_broken_mod:build")
        fn = load_callable("byo_raising_mod:build")
        with pytest.raises(SedonaError, match=r"raised ZeroDivisionError: division by zero at byo_raising_mod.py:2"):
            call_user(fn, "byo_raising_mod:build", "model", num_classes=3)
    finally:
        sys.path.remove(str(tmp_path))
