"""The watchlist schema: entities, rules and watchlists as users write them in YAML, validated by
pydantic. The matcher compiles them; the config loader embeds them in the whole config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from monitor.models import Priority

Tags = Annotated[tuple[str, ...], BeforeValidator(lambda v: (v,) if isinstance(v, str) else v)]
# An entity's aliases: one list, or one list per language (`en: [...]`, `ru: [...]`).
EntityAliases = tuple[str, ...] | dict[str, tuple[str, ...]]


class StrictModel(BaseModel):
    """A frozen config section that refuses unknown keys (a typo is an error, not a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleConfig(StrictModel):
    """all of / any of / none of, over entity names, optionally within a sentence or N words
    and only in some fields."""

    all: tuple[str, ...] = ()
    any: tuple[str, ...] = ()
    none: tuple[str, ...] = ()
    within: Literal["sentence"] | Annotated[int, Field(ge=1)] | None = None
    # Only hits in these fields count for this rule (all the watchlist's fields when empty).
    fields: tuple[Literal["title", "summary", "content"], ...] = ()

    @field_validator("within", mode="before")
    @classmethod
    def _sentence_or_words(cls, within: Any) -> Any:
        if isinstance(within, str) and within != "sentence" and not within.isdigit():
            raise ValueError(f"expected `sentence` or a number of words (got {within!r}; did "
                             "you mean `sentence`?)")
        return within

    @model_validator(mode="after")
    def _not_empty(self) -> RuleConfig:
        if not self.all and not self.any:
            raise ValueError("a rule needs `all` or `any` (a list of entity names)")
        return self


class ListsConfig(StrictModel):
    """Enumerations such as "Iran, Russia, North Korea and China": their names do not count."""

    of: tuple[str, ...] = Field(min_length=1)
    min_items: int = Field(default=3, ge=2)
    # Two names, one of them of these entities ("China and Russia", "中俄"), are a joint
    # party, not two parties to a relation: neither counts either.
    pairs_with: tuple[str, ...] = ()


class WatchlistConfig(StrictModel):
    """A named set of rules; a story matches when any rule holds and no exclusion does."""

    name: str = Field(min_length=1)
    description: str = ""
    fields: tuple[Literal["title", "summary", "content"], ...] = ("title", "summary", "content")
    tags: Tags = ()
    priority: Priority = Priority.NORMAL
    entities: dict[str, EntityAliases] = Field(default_factory=dict)
    rules: tuple[RuleConfig, ...] = Field(min_length=1)
    none: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    lists: ListsConfig | None = None


class WatchlistSource(Protocol):
    """What the matcher compiles: shared entities and the watchlists (a `Config` is one)."""

    @property
    def entities(self) -> Mapping[str, EntityAliases]: ...

    @property
    def watchlists(self) -> Sequence[WatchlistConfig]: ...
