"""resmon: what CI jobs really use, per job and per container."""

__version__ = "0.1.0"
