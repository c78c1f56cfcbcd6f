"""monitor: watches news feeds for multilingual watchlists and alerts people through Apprise.

An entry goes sources → matching → storage → delivery; `pipeline` wires the stages and the
surfaces (command line, daemon, HTTP endpoint) drive it. Layers, lowest first: a module imports
only from its own layer or lower ones (tests/test_architecture.py checks it from the imports).

    1. vocabulary      errors, models, support.*
    2. pure stages     matching.*, sources.parser, sources.workers, sources.cadence,
                       sources.increment, delivery.templates, delivery.message,
                       delivery.schedule
    3. configuration   config
    4. I/O stages      sources.fetcher, sources.feedlist, storage.*, delivery.notifier
    5. store users     delivery.outbox, health, pace
    6. wiring          pipeline
    7. surfaces        surfaces.*, __main__
"""

__version__ = "0.1.0"
