"""Sources: getting feeds — fetching with limits, parsing in bounded worker processes, and
feed lists (OPML, adding feeds to the config file)."""
