"""The zoo: importing this package registers every family with :mod:`edgecnn.registry`."""

from edgecnn.models import (  # noqa: F401
    alexnet,
    densenet,
    googlenet,
    inception_resnet,
    inception_v2,
    inception_v3,
    inception_v4,
    lenet,
    mobilenet_v1,
    mobilenet_v2,
    mobilenet_v3,
    nin,
    preact_resnet,
    resnet,
    shufflenet_v1,
    shufflenet_v2,
    squeezenet,
    vgg,
    xception,
    zfnet,
)
