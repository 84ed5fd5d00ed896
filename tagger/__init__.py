"""tagger: listen to a music library and tag which instrument families play in every track."""

__version__ = "0.1.0"
