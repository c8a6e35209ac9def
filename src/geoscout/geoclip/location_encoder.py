"""GeoCLIP's location encoder, re-implemented: Equal Earth projection -> random Fourier
features at several scales -> one MLP branch per scale, branch outputs summed.

With the default sizes its ``state_dict`` is exactly the ``geoclip`` wheel's
``location_encoder_weights.pth`` (``LocEnc{i}.capsule.{0,1,3,5}`` / ``LocEnc{i}.head.0``), so the
pretrained weights load with ``strict=True``. Smaller sizes give a cheap encoder we train ourselves.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["DEFAULT_SIGMAS", "GaussianFourierFeatures", "LocationEncoder", "equal_earth_projection"]

DEFAULT_SIGMAS: tuple[float, ...] = (2.0**0, 2.0**4, 2.0**8)

# Equal Earth projection constants (Šavrič, Patterson & Jenny 2018); SF scales x/y so that /180 keeps them ~[-1, 1].
_A1, _A2, _A3, _A4 = 1.340264, -0.081106, 0.000893, 0.003796
_SF = 66.50336


def equal_earth_projection(latlon: Tensor) -> Tensor:
    """Project (N, 2) latitude/longitude in degrees to (N, 2) Equal Earth (x, y), scaled to about [-1, 1]."""
    lat = torch.deg2rad(latlon[:, 0])
    lon = torch.deg2rad(latlon[:, 1])
    sqrt3 = math.sqrt(3.0)
    theta = torch.asin((sqrt3 / 2) * torch.sin(lat))
    denom = 3 * (9 * _A4 * theta**8 + 7 * _A3 * theta**6 + 3 * _A2 * theta**2 + _A1)
    x = (2 * sqrt3 * lon * torch.cos(theta)) / denom
    y = _A4 * theta**9 + _A3 * theta**7 + _A2 * theta**3 + _A1 * theta
    return (torch.stack((x, y), dim=1) * _SF) / 180


class GaussianFourierFeatures(nn.Module):
    """gamma(v) = [cos(2 pi B v), sin(2 pi B v)] with a fixed random B ~ N(0, sigma^2) of shape (encoded, input).

    ``b`` is a buffer: saved in the state dict, never trained.
    """

    b: Tensor

    def __init__(
        self, sigma: float, input_size: int = 2, encoded_size: int = 256, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.sigma = float(sigma)
        self.register_buffer("b", torch.randn((encoded_size, input_size), generator=generator) * self.sigma)

    def forward(self, v: Tensor) -> Tensor:
        vp = 2 * torch.pi * v @ self.b.T
        return torch.cat((torch.cos(vp), torch.sin(vp)), dim=-1)


class _Branch(nn.Module):
    """One scale: RFF -> ``depth`` x (Linear, ReLU) -> Linear to ``out_dim`` (GeoCLIP's LocationEncoderCapsule)."""

    def __init__(
        self, sigma: float, rff_dim: int, hidden: int, depth: int, out_dim: int, generator: torch.Generator | None
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [GaussianFourierFeatures(sigma, 2, rff_dim, generator)]
        width = 2 * rff_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.capsule = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(hidden, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.capsule(x))


class LocationEncoder(nn.Module):
    """GPS (N, 2) degrees -> (N, out_dim) location features (not normalised), GeoCLIP-style.

    Defaults match GeoCLIP (sigmas 2^0, 2^4, 2^8; 256 Fourier pairs; 3 x 1024 hidden; 512 out).
    ``seed`` makes the random Fourier matrices and initial weights reproducible.
    """

    def __init__(
        self,
        sigmas: Sequence[float] = DEFAULT_SIGMAS,
        *,
        rff_dim: int = 256,
        hidden: int = 1024,
        depth: int = 3,
        out_dim: int = 512,
        seed: int | None = 0,
    ) -> None:
        super().__init__()
        if not sigmas:
            raise ValueError("LocationEncoder needs at least one sigma")
        self.sigmas = tuple(float(s) for s in sigmas)
        self.out_dim = int(out_dim)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        ctx = torch.random.fork_rng() if seed is not None else contextlib.nullcontext()
        with ctx:
            if seed is not None:
                torch.manual_seed(seed)
            for i, s in enumerate(self.sigmas):
                self.add_module(f"LocEnc{i}", _Branch(s, rff_dim, hidden, depth, out_dim, gen))

    @property
    def config(self) -> dict:
        """Constructor arguments (JSON-able), inferred from the layer shapes."""
        b0: _Branch = self.LocEnc0  # type: ignore[assignment]
        lin = [m for m in b0.capsule if isinstance(m, nn.Linear)]
        return {
            "sigmas": list(self.sigmas),
            "rff_dim": int(self._rff_dim(b0)),
            "hidden": int(lin[0].out_features),
            "depth": len(lin),
            "out_dim": self.out_dim,
        }

    @staticmethod
    def _rff_dim(branch: _Branch) -> int:
        rff: GaussianFourierFeatures = branch.capsule[0]  # type: ignore[assignment]
        return int(rff.b.shape[0])

    def forward(self, latlon: Tensor) -> Tensor:
        x = equal_earth_projection(latlon)
        branches: list[Tensor] = [getattr(self, f"LocEnc{i}")(x) for i in range(len(self.sigmas))]
        out = branches[0]
        for f in branches[1:]:
            out = out + f
        return out
