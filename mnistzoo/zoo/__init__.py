"""The zoo: 37 catalogue models as versioned classes, their specs, and a registry."""

from . import models as _models  # noqa: F401 - registers every model
from .base import INPUT_NAME, OUTPUT_NAME, ZooModel
from .registry import get_model, get_model_class, list_models, register_model, studies

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "ZooModel", "get_model", "get_model_class", "list_models",
           "register_model", "studies"]
