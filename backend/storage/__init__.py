"""Files on the volume: atomic blob writes and audio codecs."""
