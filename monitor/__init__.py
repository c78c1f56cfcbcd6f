"""monitor: watches news feeds for multilingual watchlists and alerts people through Apprise."""

__version__ = "0.1.0"
