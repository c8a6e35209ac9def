"""The FastAPI server and its offline web page (optional extra ``geoscout[server]``)."""

from .app import ServerSettings, create_app

__all__ = ["ServerSettings", "create_app"]
