"""The ZeroSearch simulator: a FastAPI service that answers search requests with generated documents."""

from zerosearch_simulator.app import create_app
from zerosearch_simulator.settings import Settings, get_settings

__all__ = ["Settings", "create_app", "get_settings"]
