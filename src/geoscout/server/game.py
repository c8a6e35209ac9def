"""The play mode: a GeoGuessr-style game over the dataset given to ``geoscout serve --game DATASET``.

Rounds live on the server (a game id is an unguessable token); a round's true place is sent only
in the answer to that round's guess, and photos are re-encoded without metadata. Endpoints:

- ``GET  /v1/game``                      is a game available? (dataset name, locations, default rounds)
- ``POST /v1/game``                      start a game: ``{"rounds": 5, "seed": null}`` -> state + ``photo_url``
- ``GET  /v1/game/{id}``                 the state (played rounds' results, totals, the current ``photo_url``)
- ``GET  /v1/game/{id}/photo/{n}``       round ``n``'s photo (JPEG), for rounds reached so far
- ``POST /v1/game/{id}/guess``           ``{"lat", "lon", "round"}`` -> truth, player's and model's guesses, scores
- ``GET  /game``                         the page
"""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from ..errors import GeoscoutError, InvalidInput
from ..game import Game

__all__ = ["game_router"]


class NewGame(BaseModel):
    rounds: int | None = Field(None, ge=1, le=50, description="Rounds (default: the server's --game-rounds).")
    seed: int | None = Field(None, description="Draw the same photos again with the same seed.")


class PlayerGuess(BaseModel):
    lat: float = Field(..., ge=-90, le=90, description="Latitude of the guess, degrees.")
    lon: float = Field(..., ge=-180, le=180, description="Longitude of the guess, degrees.")
    round: int | None = Field(None, ge=1, description="The round this guess is for (refused if not the current one).")


class _Games:
    """The games in play (least recently used forgotten past ``max_games``), each with its lock."""

    def __init__(self, max_games: int) -> None:
        self.max_games = max_games
        self.games: OrderedDict[str, Game] = OrderedDict()
        self.locks: dict[str, asyncio.Lock] = {}

    def add(self, game: Game) -> None:
        self.games[game.id] = game
        self.locks[game.id] = asyncio.Lock()
        while len(self.games) > self.max_games:  # forget the least recently used games
            old, _ = self.games.popitem(last=False)
            self.locks.pop(old, None)

    def get(self, game_id: str) -> Game:
        from .errors import ApiError

        game = self.games.get(game_id)
        if game is None:
            raise ApiError(
                404, "no_such_game", f"no game {game_id!r} on this server (it ended or the server restarted)"
            )
        self.games.move_to_end(game_id)
        return game


def _state(game: Game) -> dict[str, Any]:
    """A game's state for the client, with the current round's photo URL."""
    st = game.to_dict()
    st["photo_url"] = None if game.finished else f"/v1/game/{game.id}/photo/{game.current + 1}"
    return st


async def _play_round(game: Game, player: tuple[float, float], app_state: Any, timeout_s: float) -> Any:
    """The model's guess for the current round (in a locate slot, within ``timeout_s``), then the round played."""
    from ..game import model_guess
    from .errors import ApiError

    await app_state.semaphore.acquire()
    try:
        rnd = game.rounds[game.current]
        model = await asyncio.wait_for(asyncio.to_thread(model_guess, app_state.locator, rnd.path), timeout=timeout_s)
        return await asyncio.to_thread(functools.partial(game.play_round, model, player))
    except TimeoutError:
        raise ApiError(504, "timeout", f"the model took longer than {timeout_s:g} s") from None
    except GeoscoutError as exc:
        raise ApiError(500, "model_error", str(exc)) from None
    finally:
        app_state.semaphore.release()


def game_router(settings: Any, static_dir: Any) -> APIRouter:
    """Routes of the play mode over ``settings.game`` (loaded now, so a bad dataset fails at start-up)."""
    from ..data import load_dataset
    from ..game import MAX_ROUNDS, photo_jpeg, pick_rounds
    from .errors import ApiError  # the app's JSON error type

    dataset = load_dataset(settings.game)
    pick_rounds(dataset, 1, seed=0)  # at least one location, readable columns
    n_locations = (
        dataset.frame["location_id"].fillna(dataset.frame["image_id"]).nunique()
        if "location_id" in dataset.frame.columns
        else len(dataset.frame)
    )
    games = _Games(settings.max_games)
    router = APIRouter(prefix="/v1/game", tags=["game"])

    @router.get("", summary="Whether this server has a game, and over which dataset")
    async def info() -> dict[str, Any]:
        return {"dataset": dataset.name, "locations": int(n_locations), "rounds": settings.game_rounds}

    @router.post("", summary="Start a game: random photos of distinct locations")
    async def new_game(body: NewGame | None = None) -> dict[str, Any]:
        body = body or NewGame(rounds=None, seed=None)
        rounds = body.rounds or settings.game_rounds
        if rounds > min(MAX_ROUNDS, n_locations):
            raise ApiError(422, "invalid_request", f"rounds must be <= {min(MAX_ROUNDS, n_locations)}, got {rounds}")
        try:
            game = Game(await asyncio.to_thread(pick_rounds, dataset, rounds, seed=body.seed))
        except InvalidInput as exc:
            raise ApiError(422, "invalid_request", str(exc)) from None
        games.add(game)
        return _state(game)

    @router.get("/{game_id}", summary="A game's state: results of the rounds played so far and the totals")
    async def state(game_id: str) -> dict[str, Any]:
        return _state(games.get(game_id))

    @router.get("/{game_id}/photo/{n}", summary="Round n's photo (JPEG without metadata)")
    async def photo(game_id: str, n: int) -> Response:
        game = games.get(game_id)
        if not 1 <= n <= min(game.current + 1, len(game.rounds)):
            raise ApiError(404, "no_such_round", f"round {n} of game {game_id} is not reached yet or does not exist")
        try:
            data = await asyncio.to_thread(photo_jpeg, game.rounds[n - 1].path)
        except InvalidInput:
            raise ApiError(500, "unreadable_photo", f"round {n}'s photo cannot be read on the server") from None
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @router.post("/{game_id}/guess", summary="Guess the current round: the answer shows the truth and both scores")
    async def guess(game_id: str, body: PlayerGuess, request: Request) -> dict[str, Any]:
        game = games.get(game_id)
        async with games.locks[game_id]:
            if game.finished:
                raise ApiError(409, "game_over", f"game {game_id} is over; start a new one with POST /v1/game")
            if body.round is not None and body.round != game.current + 1:
                raise ApiError(
                    409,
                    "wrong_round",
                    f"round {body.round} was already played; the current round is {game.current + 1}",
                )
            result = await _play_round(game, (body.lat, body.lon), request.app.state, settings.request_timeout_s)
        return {**_state(game), "result": result.to_dict()}

    page = APIRouter()

    @page.get("/game", include_in_schema=False)
    async def game_page() -> FileResponse:
        return FileResponse(static_dir / "game.html", media_type="text/html")

    outer = APIRouter()
    outer.include_router(router)
    outer.include_router(page)
    return outer
