"""nnmend: find and mend defects in trained neural networks.

The flow: load a network → damage or attack it → diagnose → repair → verify / evaluate → save.
See DESIGN.md for the map of the package.
"""
from .data import Dataset, load_dataset
from .errors import DataError, ModelError, NnmendError, PropertyError, RepairError
from .graph import GraphNetwork, from_module
from .io import load_network, save_network
from .nets import get_layer, named_layers, pretrained, shnn_mlp
from .train import accuracy, fit

__version__ = "0.1.0"

__all__ = [
    "Dataset", "load_dataset", "NnmendError", "DataError", "ModelError", "PropertyError", "RepairError",
    "load_network", "save_network", "GraphNetwork", "from_module", "named_layers", "get_layer", "pretrained", "shnn_mlp", "fit", "accuracy",
]
