"""Reading and writing networks, properties and reports. Every write is atomic."""
from .atomic import atomic_write
from .checkpoint import Checkpoint, load_checkpoint, load_network, save_checkpoint, save_network

__all__ = ["atomic_write", "Checkpoint", "load_checkpoint", "load_network", "save_checkpoint", "save_network"]
