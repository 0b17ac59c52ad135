"""The JSON beside an export: class names found down the data set wrappers or known for the built-in data sets,
and its file name beside the export."""
from __future__ import annotations

from types import SimpleNamespace as NS

import pytest

from sedona_runtime.trained.export_info import CIFAR10_CLASSES, class_names, sidecar_path
from sedona_runtime.utils.errors import SedonaError


@pytest.mark.parametrize("train,dataset,want", [
    (NS(parent=NS(dataset=NS(classes=["cat", "dog"]))), "my.data:build", ["cat", "dog"]),  # Subset(User(ds))
    (NS(classes=["a", "b"]), "imagefolder", ["a", "b"]),
    (NS(parent=NS(dataset=NS(classes=[0, 1]))), "my.data:build", None),  # not names
    (NS(classes=["only one"]), "imagefolder", None),                      # not one per class
    (NS(), "digits", [str(i) for i in range(10)]),
    (NS(), "cifar10", list(CIFAR10_CLASSES)),
    (NS(), "synthetic", None),
])
def test_class_names(train, dataset, want):
    n = len(want) if want else 2
    if dataset in ("digits", "cifar10"):
        n = 10
    assert class_names(NS(num_classes=n, train=train), NS(dataset=dataset, data_dir=None)) == want


def test_the_json_goes_beside_the_export():
    assert str(sidecar_path("out/model.pt2")) == "out/model.json"
    with pytest.raises(SedonaError, match="may not end in .json"):
        sidecar_path("model.json")
