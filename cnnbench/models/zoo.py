"""Imports every architecture module so that each registers its builders."""

from cnnbench.models import (  # noqa: F401
    alexnet,
    googlenet,
    inception,
    lenet,
    resnet,
    vgg,
)
