"""memprobe: measure a machine's memory hierarchy and how it shapes training speed."""

__version__ = "0.1.0"
