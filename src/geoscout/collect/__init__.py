"""Collect geotagged imagery: samplers (where to look), providers (Street View, Mapillary), resumable jobs.

>>> from geoscout.collect import collect
>>> report = collect("data/hr", provider="streetview", sampler="polygon", sampler_options={"polygon": "HR"}, n=100)

Keys come from ``GOOGLE_MAPS_API_KEY`` / ``MAPILLARY_ACCESS_TOKEN`` or ``~/.config/geoscout/keys.toml``
and never reach a log, an error message, the state database or the manifest.
"""

from __future__ import annotations

from .http import AccessDenied, PoliteClient, QuotaReached, RequestFailed, RetryPolicy, TokenBucket, parse_rate
from .job import STATE_NAME, CollectJob, CollectReport, collect, read_state_summary
from .keys import Redactor, load_key
from .providers import (
    PROVIDERS,
    Location,
    MapillaryProvider,
    Provider,
    StreetViewProvider,
    View,
    create_provider,
    list_providers,
)
from .samplers import SAMPLERS, SamplePoint, Sampler, create_sampler, list_samplers

__all__ = [
    "PROVIDERS",
    "SAMPLERS",
    "STATE_NAME",
    "AccessDenied",
    "CollectJob",
    "CollectReport",
    "Location",
    "MapillaryProvider",
    "PoliteClient",
    "Provider",
    "QuotaReached",
    "Redactor",
    "RequestFailed",
    "RetryPolicy",
    "SamplePoint",
    "Sampler",
    "StreetViewProvider",
    "TokenBucket",
    "View",
    "collect",
    "create_provider",
    "create_sampler",
    "list_providers",
    "list_samplers",
    "load_key",
    "parse_rate",
    "read_state_summary",
]
