"""Reading and writing networks, properties and reports. Every write is atomic."""
from .atomic import atomic_write
from .checkpoint import Checkpoint, load_checkpoint, load_network, save_checkpoint, save_network
from .nnet import load_nnet, save_nnet
from .onnx import load_onnx, save_onnx
from .vnnlib import Region, VnnlibSpec, read_vnnlib, write_vnnlib

__all__ = ["atomic_write", "Checkpoint", "load_checkpoint", "load_network", "save_checkpoint", "save_network",
           "load_nnet", "save_nnet", "load_onnx", "save_onnx", "Region", "VnnlibSpec", "read_vnnlib", "write_vnnlib"]
