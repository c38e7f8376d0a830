"""The store behind an ``http(s)://`` tracking URI: an ``evtrack server``."""
