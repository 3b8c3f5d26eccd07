"""Layers: forward(x) -> y and backward(dy) -> dx, parameters in PyTorch's layouts."""
from .module import Module
from .conv import Conv2d, LocallyConnected2d, Linear, Flatten
from .pool import MaxPool2d, AvgPool2d
from .activation import ReLU, Sigmoid, Tanh, Softmax, LocalResponseNorm, Dropout
from .loss import SoftmaxCrossEntropy
from .sequential import Sequential
from . import init

__all__ = ["Module", "Conv2d", "LocallyConnected2d", "Linear", "Flatten", "MaxPool2d", "AvgPool2d",
           "ReLU", "Sigmoid", "Tanh", "Softmax", "LocalResponseNorm", "Dropout",
           "SoftmaxCrossEntropy", "Sequential", "init"]
