"""Configuration: the YAML file, `${VAR}` interpolation, validation and clear errors.

`load_config(path)` returns a frozen `Config` or raises `ConfigError`, whose message names the
file, the line, the key path and what is wrong (unknown keys come with the closest known key).
`${VAR}` and `${VAR:-default}` are read from the environment; `$$` stands for a literal `$`
(as in Docker Compose), and text that came from strangers (an OPML file, a feed's own title) is
written into the file with `literal`, so it can never name an environment variable.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from monitor.delivery.message import check_template
from monitor.errors import ConfigError, WatchlistError
from monitor.matching.matcher import compile_watchlists
from monitor.matching.watchlist import EntityAliases, StrictModel, Tags, WatchlistConfig
from monitor.support.secrets import mask_url

DEFAULT_CONFIG = "config.yaml"
MIN_FEED_INTERVAL = 10.0  # seconds: poll.interval's floor, and an imported feed's
ENV_FILE = "env"  # beside the config: NAME=value lines for ${NAME} (the unit's EnvironmentFile)
# libyaml's safe loader where PyYAML was built with it: 10x faster on a config of many feeds.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_CONFIG_VALUES = 200_000
_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(s|m|h|d|w)\s*$")
_CLOCK = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3, "gib": 1024**3,
}


def format_duration(seconds: float) -> str:
    """Seconds as the config writes them: "1h", "90s", "2d"."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size:.0f}{unit}"
    return f"{seconds:g}s"


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as `90s`, `15m`, `6h`, `7d`."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 15m, 2h or 7d")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        found = _DURATION.match(str(value).lower())
        if not found:
            raise ValueError(f"invalid duration {value!r}: use e.g. 30s, 15m, 2h or 7d")
        seconds = float(found.group(1)) * _DURATION_UNITS[found.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def parse_size(value: Any) -> int:
    """Bytes from a number or a string such as `512KB` or `10MB`."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512KB or 10MB")
    if isinstance(value, int):
        size = value
    else:
        found = _SIZE.match(str(value))
        if not found:
            raise ValueError(f"invalid size {value!r}: use e.g. 512KB or 10MB")
        size = int(float(found.group(1)) * _SIZE_UNITS[(found.group(2) or "b").lower()])
    if size <= 0:
        raise ValueError("a size must be positive")
    return size


def parse_interval(value: Any) -> float | Literal["auto"]:
    """`auto`, or a duration of at least `MIN_FEED_INTERVAL`."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    seconds = parse_duration(value)
    if seconds < MIN_FEED_INTERVAL:
        raise ValueError(f"should be auto or at least {format_duration(MIN_FEED_INTERVAL)} "
                         f"(got {format_duration(seconds)})")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
PollInterval = Annotated[float | Literal["auto"], BeforeValidator(parse_interval)]
Size = Annotated[int, BeforeValidator(parse_size)]


class FeedConfig(StrictModel):
    """One feed to poll."""

    url: str = Field(max_length=2048)
    name: str | None = Field(default=None, max_length=500)
    interval: Duration | None = None
    tags: Tags = ()

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not re.match(r"^https?://[^\s/]+", url, re.IGNORECASE):
            raise ValueError(f"feed url must start with http:// or https:// (got {url!r})")
        return url.strip()

    @property
    def title(self) -> str:
        """The name shown in logs and alerts (the URL, its credentials masked, if unnamed)."""
        return self.name or mask_url(self.url)


def parse_rate(value: Any) -> tuple[int, float]:
    """(messages, seconds) from a rate such as `10/h`, `5/30m` or `20/1d`."""
    found = _RATE.match(str(value).lower())
    if not found or isinstance(value, bool):
        raise ValueError(f"invalid rate {value!r}: use e.g. 10/h, 5/30m or 20/1d")
    count, number, unit = int(found.group(1)), found.group(2) or "1", found.group(3)
    if count < 1:
        raise ValueError("a rate limit allows at least 1 message")
    return count, parse_duration(number + unit)


def parse_clock(value: Any) -> time:
    """A local time of day from `HH:MM`."""
    if isinstance(value, int) and not isinstance(value, bool):  # YAML 1.1 reads 22:00 as 1320
        value = f"{value // 60:02d}:{value % 60:02d}"
    found = _CLOCK.match(str(value))
    if not found or int(found.group(1)) > 23 or int(found.group(2)) > 59:
        raise ValueError(f"invalid time {value!r}: use HH:MM, e.g. 07:30")
    return time(int(found.group(1)), int(found.group(2)))


def parse_quiet(value: Any) -> tuple[time, time]:
    """Quiet hours from `HH:MM-HH:MM` (may span midnight)."""
    start, sep, end = str(value).partition("-")
    if not sep:
        raise ValueError(f"invalid quiet hours {value!r}: use HH:MM-HH:MM, e.g. 22:00-07:00")
    window = parse_clock(start.strip()), parse_clock(end.strip())
    if window[0] == window[1]:
        raise ValueError("quiet hours cannot start and end at the same time")
    return window


def parse_zone(value: Any) -> str:
    """An IANA time zone name such as `Europe/Berlin` (checked against the tz database)."""
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}: use an IANA name such as "
                         "Europe/Berlin, Asia/Seoul or UTC") from None
    return str(value)


class TemplateConfig(StrictModel):
    """A target's own alert title and body (Jinja2; see the README for the fields)."""

    title: str | None = None
    body: str | None = None

    @field_validator("title", "body")
    @classmethod
    def _renders(cls, template: str | None) -> str | None:
        if template is not None:
            check_template(template)
        return template


class NotifyConfig(StrictModel):
    """One Apprise target: what reaches it (`tags`), at what pace and in what form."""

    url: str = Field(min_length=3)
    name: str | None = None
    tags: Tags = ()
    mode: Literal["immediate", "digest"] = "immediate"
    digest_every: Duration = Field(default=3600.0, ge=60, le=7 * 86400)
    digest_at: Annotated[time, BeforeValidator(parse_clock)] = time(0, 0)
    digest_limit: int = Field(default=50, ge=1, le=1000)
    rate_limit: Annotated[tuple[int, float], BeforeValidator(parse_rate)] | None = None
    quiet_hours: Annotated[tuple[time, time], BeforeValidator(parse_quiet)] | None = None
    timezone: Annotated[str, BeforeValidator(parse_zone)] = "UTC"
    urgent: Literal["low", "normal", "high", "none"] = "high"
    format: Literal["markdown", "html", "text"] | None = None
    template: TemplateConfig = TemplateConfig()
    max_length: int | None = Field(default=None, ge=200)
    updates: bool = False
    sources_after: Duration | None = Field(default=None, ge=60)
    timeout: Duration | None = Field(default=None, gt=0)  # else delivery.timeout

    @field_validator("url")
    @classmethod
    def _apprise_url(cls, url: str) -> str:
        if "://" not in url:
            raise ValueError("an Apprise URL looks like scheme://… (e.g. tgram://TOKEN/CHAT)")
        return url.strip()

    @property
    def message_format(self) -> Literal["markdown", "html", "text"]:
        """The configured format, else html for email, text for the console (a terminal
        shows markdown's escapes as they are) and markdown for everything else."""
        if self.format:
            return self.format
        scheme = self.url.lower().partition("://")[0]
        if scheme in ("mailto", "mailtos"):
            return "html"
        return "text" if scheme == "console" else "markdown"


class PollConfig(StrictModel):
    """How feeds are fetched and what counts as news."""

    # `auto`: each feed's interval follows its publishing rate, within these bounds.
    interval: PollInterval = "auto"
    min_interval: Duration = Field(default=120.0, ge=1)
    max_interval: Duration = Field(default=3600.0, ge=1)
    after_alert: Duration = 3600.0  # feeds that carry an alerted watchlist: at the minimum
    jitter: Duration = 30.0
    timeout: Duration = Field(default=30.0, gt=0)
    connect_timeout: Duration = Field(default=10.0, gt=0)
    max_body: Size = 10 * 1024**2
    max_redirects: int = Field(default=5, ge=0, le=20)
    concurrency: int = Field(default=20, ge=1, le=500)
    per_host: int = Field(default=4, ge=1, le=100)
    lease: Duration = Field(default=120.0, gt=0)
    parsers: int = Field(default=0, ge=0, le=64)
    parse_timeout: Duration = Field(default=20.0, gt=0)
    parse_memory: Size = 512 * 1024**2
    parse_idle: Duration = Field(default=60.0, gt=0)  # a parser process without work exits
    backfill: Duration = 6 * 3600.0
    max_age: Duration = 7 * 86400.0
    user_agent: str | None = None

    @model_validator(mode="after")
    def _bounds_in_order(self) -> PollConfig:
        if self.min_interval > self.max_interval:
            raise ValueError(f"min_interval ({format_duration(self.min_interval)}) is longer "
                             f"than max_interval ({format_duration(self.max_interval)})")
        return self


class DeliveryConfig(StrictModel):
    """How the outbox retries a target that is down."""

    interval: Duration = Field(default=30.0, ge=1)
    retry_base: Duration = Field(default=60.0, gt=0)
    retry_max: Duration = Field(default=3600.0, gt=0)
    expire_after: Duration = Field(default=3 * 86400.0, gt=0)
    timeout: Duration = Field(default=30.0, gt=0)


class HealthConfig(StrictModel):
    """Notices about feeds that keep failing or have gone quiet, sent to targets with `tag`."""

    tag: str | None = None
    failing_after: Duration = 6 * 3600.0
    stale_after: Duration = 3 * 86400.0
    stale_factor: float = Field(default=10.0, ge=0)
    interval: Duration = Field(default=300.0, ge=1)
    # /healthz fails while an alert that targets keep refusing has waited longer than this.
    stuck_after: Duration = Field(default=3600.0, ge=60)


class HttpConfig(StrictModel):
    """The optional HTTP endpoint (/healthz, /metrics, /feed.xml, /)."""

    listen: str | None = None

    @field_validator("listen", mode="before")
    @classmethod
    def _host_port(cls, listen: Any) -> str | None:
        if listen is not None and not (isinstance(listen, str) and re.match(
                r"^(\[[0-9a-fA-F:]+\]|[\w.-]*):\d{1,5}$", listen)):
            raise ValueError(f"expected HOST:PORT such as 127.0.0.1:8080 (got {listen!r})")
        return listen


class Config(StrictModel):
    """The whole validated configuration."""

    database: str = ""
    poll: PollConfig = PollConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    health: HealthConfig = HealthConfig()
    http: HttpConfig = HttpConfig()
    feeds: tuple[FeedConfig, ...] = ()
    notify: tuple[NotifyConfig, ...] = ()
    entities: dict[str, EntityAliases] = Field(default_factory=dict)
    watchlists: tuple[WatchlistConfig, ...] = ()
    path: str = Field(default="", exclude=True)

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        for kind, names in (
            ("watchlists", [w.name for w in self.watchlists]),
            ("feeds", [f.url for f in self.feeds]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{kind}: duplicate {', '.join(dupes)}")
        return self


@dataclass(frozen=True)
class _Located:
    """YAML nodes by key path, so errors can point at a line."""

    root: yaml.Node | None

    def line(self, loc: tuple[str | int, ...]) -> int | None:
        node, best = self.root, None
        for part in loc:
            if node is None:
                break
            best = node.start_mark.line + 1
            node = _child(node, part)
        if node is not None:
            best = node.start_mark.line + 1
        return best


def line_of(path: Path | str, loc: tuple[str | int, ...]) -> int | None:
    """The line of the config file at `path` that holds the key path `loc`, if it can tell."""
    try:
        root = yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=_LOADER)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return _Located(root).line(loc)


def _child(node: yaml.Node, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == str(part):
                found: yaml.Node = value if not isinstance(value, yaml.ScalarNode) \
                    or value.value else key
                return found
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        child: yaml.Node | None = node.value[part]
        return child
    return None


def _size(value: Any, budget: int = 0) -> int:
    """How many values the YAML holds once aliases are expanded; stops counting past the cap."""
    stack, seen = [value], budget
    while stack and seen <= MAX_CONFIG_VALUES:
        item = stack.pop()
        seen += 1
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return seen


def read_environment_file(path: Path) -> dict[str, str]:
    """`NAME=value` lines as systemd's EnvironmentFile= reads them (blank lines and `#`/`;`
    comments skipped, one pair of surrounding quotes removed); {} when it cannot be read."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):  # the service's user may not read root's file
        return {}
    found = {}
    for line in lines:
        name, equals, value = line.strip().partition("=")
        if equals and name and not name.startswith(("#", ";")):
            value = value.strip()
            if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            found[name.strip()] = value
    return found


class _Variables:
    """Where `${NAME}` is looked up: the environment; then `$CREDENTIALS_DIRECTORY/NAME`
    (systemd credentials); then the `env` file beside the config, which systemd hands the
    service (EnvironmentFile=) and which a person's admin commands read themselves."""

    def __init__(self, config_path: str):
        path = Path(config_path)
        self._folder = path.parent if path.is_file() else None  # not for text without a file
        self._file: dict[str, str] | None = None

    def get(self, name: str) -> str | None:
        if name in os.environ:
            return os.environ[name]
        credentials = os.environ.get("CREDENTIALS_DIRECTORY")
        if credentials:
            try:
                return (Path(credentials) / name).read_text(encoding="utf-8").rstrip("\n")
            except (OSError, UnicodeDecodeError, ValueError):
                pass
        if self._file is None:
            self._file = read_environment_file(self._folder / ENV_FILE) if self._folder else {}
        return self._file.get(name)


def _interpolate(value: Any, path: str, key: str = "",
                 variables: _Variables | None = None) -> Any:
    variables = variables or _Variables(path)
    if isinstance(value, str):
        def substitute(found: re.Match[str]) -> str:
            name, default = found.group(1), found.group(2)
            if name is None:  # `$$`
                return "$"
            known = variables.get(name)
            if known is not None:
                return known
            if default is not None:
                return default
            raise ConfigError(path, f"variable {name} is not set (in the environment, in "
                              f"{Path(path).parent / ENV_FILE} or as a systemd credential)",
                              key=key)

        return _ENV_REF.sub(substitute, value)
    if isinstance(value, list):
        return [_interpolate(v, path, f"{key}[{i}]", variables) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _interpolate(v, path, f"{key}.{k}" if key else str(k), variables)
                for k, v in value.items()}
    return value


def literal(text: str) -> str:
    """`text` written so that the config reads it back unchanged (`$` doubled), for text from
    strangers that must never be interpolated from the environment."""
    return text.replace("$", "$$")


def require_work(config: Config) -> None:
    """Refuse a config that would run without doing anything: no feeds, or no watchlists."""
    for key, items, hint in (
        ("feeds", config.feeds, "add one (`feeds: [{url: https://…}]`) or run "
         "`monitor feeds add URL` / `monitor feeds import FILE.opml`"),
        ("watchlists", config.watchlists, "add one (`watchlists: [{name: …, rules: […]}]`); "
         "`monitor init` writes the bundled default"),
    ):
        if not items:
            raise ConfigError(config.path, f"no {key} configured, so there is nothing to "
                              f"do: {hint}", key=key)


def _key_path(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _known_fields(loc: tuple[str | int, ...]) -> list[str]:
    model: type[BaseModel] | None = Config
    for part in loc[:-1]:
        if model is None or isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        args = getattr(annotation, "__args__", ())
        model = next((a for a in (annotation, *args) if isinstance(a, type)
                      and issubclass(a, BaseModel)), None)
    return list(model.model_fields) if model else []


def _is_type_tag(part: str | int) -> bool:
    """Pydantic puts union member names such as `tuple[str, ...]` or `int` into error paths."""
    return isinstance(part, str) and ("[" in part or part.startswith("function-")
                                      or part in ("int", "str", "float", "bool"))


def _plain_loc(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """A key path without pydantic's union branch tags."""
    return tuple(part for part in loc if not _is_type_tag(part))


def _explain(error: Mapping[str, Any]) -> tuple[tuple[str | int, ...], str]:
    loc = tuple(p for p in error["loc"] if not _is_type_tag(p))
    if error["type"] == "extra_forbidden":
        known = [k for k in _known_fields(loc) if k != "path"]
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f" (did you mean `{close[0]}`?)" if close else f" (known keys: {', '.join(known)})"
        return loc, "unknown key" + hint
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        message = "required key is missing"
    return loc, message


def default_config_path() -> Path:
    """`$MONITOR_CONFIG`, else `./config.yaml`."""
    return Path(os.environ.get("MONITOR_CONFIG") or DEFAULT_CONFIG)


def default_database_url(config_path: Path) -> str:
    """Where the SQLite file goes when `database` is empty, by the systemd unit's own rule so
    that the service and a person's admin commands find the same file: systemd's
    `$STATE_DIRECTORY`; else, for a config in `/etc/NAME/` (the unit's ConfigurationDirectory),
    `/var/lib/NAME/` (its StateDirectory); else beside the config."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    folder = config_path.resolve().parent
    if state:
        folder = Path(state)
    elif folder.parent == Path("/etc"):
        folder = Path("/var/lib") / folder.name
    return f"sqlite:///{folder / 'monitor.db'}"


def _resolve_database(url: str, config_path: Path) -> str:
    if not url:
        return default_database_url(config_path)
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        return prefix + str((config_path.resolve().parent / url[len(prefix):]).resolve())
    return url


def _check_holds(config: Config, path: Path, located: _Located) -> None:
    """A target may not hold alerts longer than `delivery.expire_after`: a held alert whose
    first attempt failed would be expired at once instead of retried."""
    limit = config.delivery.expire_after
    for number, notify in enumerate(config.notify):
        holds = [("rate_limit", notify.rate_limit[1])] if notify.rate_limit else []
        # Digests (and what exceeds `digest_limit`) wait up to a digest period.
        if notify.mode == "digest" or notify.rate_limit or notify.quiet_hours:
            holds.append(("digest_every", notify.digest_every))
        if notify.quiet_hours:
            start, end = (t.hour * 3600 + t.minute * 60 for t in notify.quiet_hours)
            holds.append(("quiet_hours", float((end - start) % 86400)))
        for key, seconds in holds:
            if seconds >= limit:
                loc = ("notify", number, key)
                raise ConfigError(path, f"holds alerts up to {seconds / 3600:g} h, not less than "
                                  f"delivery.expire_after ({limit / 3600:g} h): raise "
                                  "delivery.expire_after", key=_key_path(loc),
                                  line=located.line(loc))


def _yaml_problem(error: yaml.YAMLError) -> tuple[int | None, str]:
    """The line to show and what is wrong. An unclosed bracket or quote is noticed lines
    later, where the next thing starts: show the line where it was opened."""
    problem = getattr(error, "problem", None) or str(error)
    mark, start = getattr(error, "problem_mark", None), getattr(error, "context_mark", None)
    context = str(getattr(error, "context", None) or "")
    line = mark.line + 1 if mark else None
    if start is not None and line is not None and ("flow" in context or "quoted" in context) \
            and start.line + 1 < line:
        opened = context.removeprefix("while ")
        return start.line + 1, f"{problem} ({opened} that starts on this line; noticed on " \
                               f"line {line})"
    return line, problem


def parse_config(text: str, path: Path | str = "<config>") -> Config:
    """Validate config text; `path` is used for messages and to place relative files."""
    path = Path(path)
    try:
        root = yaml.compose(text, Loader=_LOADER)
        raw = yaml.load(text, Loader=_LOADER)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as error:
        line, message = _yaml_problem(error)
        raise ConfigError(path, f"invalid YAML: {message}", line=line) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(path, "the top level must be a mapping of keys (feeds, notify, …)",
                          line=1)
    located = _Located(root)
    if _size(raw) > MAX_CONFIG_VALUES:
        raise ConfigError(path, f"more than {MAX_CONFIG_VALUES} values (an alias loop or bomb?)")
    raw = _interpolate(raw, str(path))
    try:
        config = Config.model_validate(raw)
    except ValidationError as errors:
        # An unknown key usually explains a missing one (a typo): report it first.
        first = min(errors.errors(), key=lambda e: e["type"] != "extra_forbidden")
        loc, message = _explain(first)
        # A value that fits no branch of a union fails once per branch, and a list whose only
        # item failed is "too short": those are the same problem.
        where = _plain_loc(first["loc"])
        more = len({loc for loc in (_plain_loc(e["loc"]) for e in errors.errors())
                    if loc != where[:len(loc)]})
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise ConfigError(path, message + suffix, key=_key_path(loc),
                          line=located.line(loc)) from None
    _check_holds(config, path, located)
    try:
        compile_watchlists(config)
    except WatchlistError as error:
        raise ConfigError(path, error.problem, key=_key_path(error.loc),
                          line=located.line(error.loc)) from None
    return config.model_copy(update={
        "database": _resolve_database(config.database, path), "path": str(path)})


@dataclass(frozen=True)
class Salvage:
    """What a config file that does not validate still tells the commands that only read the
    database: the database it leads to and its URLs (so their secrets can be masked)."""

    database: str
    notify_urls: list[str]
    feed_urls: list[str]


def salvage(path: Path | str) -> Salvage:
    """Read a broken config file as far as it allows: its `database` key (else the default)
    and the `url` of each notify and feed entry, each interpolated where it can be."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)  # noqa: S506
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        raw = None
    raw = raw if isinstance(raw, dict) else {}

    def text(value: object) -> str | None:
        try:
            return str(_interpolate(value, str(path))) if isinstance(value, str) else None
        except ConfigError:
            return None

    def urls(key: str) -> list[str]:
        items = raw.get(key)
        found = (text(item.get("url")) for item in (items if isinstance(items, list) else [])
                 if isinstance(item, dict))
        return [url for url in found if url]

    return Salvage(_resolve_database(text(raw.get("database")) or "", path), urls("notify"),
                   urls("feeds"))


def load_config(path: Path | str) -> Config:
    """Read and validate the config file at `path`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "file not found (use --config PATH or $MONITOR_CONFIG)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(path, f"cannot read: {error}") from None
    return parse_config(text, path)
